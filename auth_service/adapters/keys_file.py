"""JWT_SIGNING_KEYS_FILE: a JWK Set of private keys the operator keeps. The first key signs, every
key is published. The file is read again when it changes (its size, time or inode), so a rotation
is an edit of the file, with no restart; replicas that mount one file agree on it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from auth_service.domain.signing_keys import BadSigningKey, SigningKey, key_from_jwk

MAX_FILE_BYTES = 1024 * 1024


class KeysFileError(Exception):
    """The file is missing, unreadable, or not a JWK Set of usable private keys."""


class KeysFile:
    def __init__(self, path: Path):
        self.path = path
        self._seen: tuple[int, int, int] | None = None

    def changed(self) -> bool:
        """Has the file changed since the last ``read`` (a missing file counts as changed)?"""
        try:
            return self._stamp() != self._seen
        except OSError:
            return True

    def _stamp(self) -> tuple[int, int, int]:
        status = self.path.stat()
        return status.st_ino, status.st_size, status.st_mtime_ns

    def read(self) -> list[SigningKey]:
        try:
            stamp = self._stamp()
            if stamp[1] > MAX_FILE_BYTES:
                raise KeysFileError(f"{self.path} is larger than {MAX_FILE_BYTES} bytes")
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as error:
            raise KeysFileError(f"{self.path} cannot be read: {error.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise KeysFileError(f"{self.path} is not JSON: {error}") from None
        keys = parse_key_set(document, str(self.path))
        self._seen = stamp
        return keys

    def write(self, keys: Sequence[SigningKey]) -> None:
        """Replace the file in one rename, readable by its owner only (it holds private keys)."""
        document = {"keys": [dict(key.private_jwk) for key in keys]}
        directory = self.path.parent
        descriptor, temporary = tempfile.mkstemp(prefix=".jwks-", dir=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2)
                handle.write("\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def parse_key_set(document: object, source: str) -> list[SigningKey]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list) or not document["keys"]:
        raise KeysFileError(f'{source} must be a JWK Set with at least one key: {{"keys": [...]}}')
    keys = []
    for entry in document["keys"]:
        try:
            keys.append(key_from_jwk(entry))
        except BadSigningKey as error:
            raise KeysFileError(f"{source}: {error}") from None
    kids = [key.kid for key in keys]
    if len(set(kids)) != len(kids):
        raise KeysFileError(f"{source}: two keys share a kid")
    return keys
