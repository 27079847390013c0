"""ADMIN_KEYS_FILE: the admin keys, one line each (auth_service/domain/admin_keys.py).

The file is looked at on every admin request (one ``stat``) and read again when
its inode, size or time changed, so a key created or revoked with ``python -m
auth_service admin-keys`` counts at the next request, with no restart, and
replicas that mount one file agree. A file that cannot be read or holds a bad
line admits nobody until it is fixed: a half-written revocation must not leave
the revoked key working.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from auth_service.domain.admin_keys import AdminKey, BadKeyLine, format_line, parse_line

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1024 * 1024
HEADER = "# Admin keys: name<TAB>scopes<TAB>hash<TAB>created. Edit with `python -m auth_service admin-keys`.\n"


class AdminKeysFileError(Exception):
    """The file cannot be read, or a line of it is not a key."""


class AdminKeysFile:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._by_id: dict[str, AdminKey] = {}

    def find(self, key_id: str) -> AdminKey | None:
        """The key of that id as the file holds it now; None if there is none (or the file is unusable)."""
        with self._lock:
            try:
                stamp = self._stamp()
            except OSError:
                self._forget("the admin keys file cannot be read: every admin request is refused")
                return None
            if stamp != self._seen:
                try:
                    keys = self._parse(stamp)
                except AdminKeysFileError as error:
                    self._forget(f"the admin keys file is refused, every admin request with it: {error}")
                    return None
                self._by_id = {key.key_id: key for key in keys}
                self._seen = stamp
                log.info("admin keys read", extra={"keys": len(keys)})
            return self._by_id.get(key_id)

    def _forget(self, message: str) -> None:
        if self._by_id or self._seen is not None:
            log.error(message)
        self._by_id = {}
        self._seen = None

    def _stamp(self) -> tuple[int, int, int]:
        status = self.path.stat()
        return status.st_ino, status.st_size, status.st_mtime_ns

    def _parse(self, stamp: tuple[int, int, int]) -> list[AdminKey]:
        if stamp[1] > MAX_FILE_BYTES:
            raise AdminKeysFileError(f"{self.path} is larger than {MAX_FILE_BYTES} bytes")
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise AdminKeysFileError(f"{self.path} cannot be read: {error}") from None
        return parse_keys(text, str(self.path))

    def read(self) -> list[AdminKey]:
        """Every key of the file, in its order (a missing file holds none)."""
        if not self.path.exists():
            return []
        try:
            return self._parse(self._stamp())
        except OSError as error:
            raise AdminKeysFileError(f"{self.path} cannot be read: {error.strerror}") from None

    def write(self, keys: Sequence[AdminKey]) -> None:
        """Replace the file in one rename, readable by its owner only: a reader sees the old file or the new."""
        directory = self.path.parent
        descriptor, temporary = tempfile.mkstemp(prefix=".admin-keys-", dir=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(HEADER)
                for key in keys:
                    handle.write(format_line(key) + "\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class NoAdminKeys:
    """ADMIN_KEYS_FILE unset: no key exists, every admin request is 401."""

    def find(self, key_id: str) -> AdminKey | None:
        return None


def parse_keys(text: str, source: str) -> list[AdminKey]:
    keys: list[AdminKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            key = parse_line(line)
        except BadKeyLine as error:
            raise AdminKeysFileError(f"{source}, line {number}: {error}") from None
        if key is not None:
            keys.append(key)
    names = [key.name for key in keys]
    ids = [key.key_id for key in keys]
    if len(set(names)) != len(names) or len(set(ids)) != len(ids):
        raise AdminKeysFileError(f"{source}: two keys share a name or an id")
    return keys
