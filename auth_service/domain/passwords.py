"""Password hashing with bcrypt at a configurable cost."""

from __future__ import annotations

import bcrypt

from auth_service.domain.accounts import PASSWORD_MAX_BYTES


class PasswordHasher:
    def __init__(self, rounds: int):
        self._rounds = rounds
        # Checked against when the address is unknown, so that a 401 takes as
        # long for an unknown address as for a wrong password.
        self._dummy_hash = bcrypt.hashpw(b"dummy password for timing", bcrypt.gensalt(rounds))

    def hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._rounds)).decode()

    def verify(self, password: str, password_hash: str) -> bool:
        candidate = _bcrypt_input(password)
        if candidate is None:  # no account can have it: registration refuses such passwords
            self.burn_time(password)
            return False
        return bcrypt.checkpw(candidate, password_hash.encode())

    def burn_time(self, password: str) -> None:
        bcrypt.checkpw(_bcrypt_input(password) or b"", self._dummy_hash)

    def needs_rehash(self, password_hash: str) -> bool:
        # "$2b$12$..." carries its cost in the second field.
        try:
            return int(password_hash.split("$")[2]) < self._rounds
        except (IndexError, ValueError):
            return True


def _bcrypt_input(password: str) -> bytes | None:
    """The bytes bcrypt hashes, or None if it would refuse them (over 72 bytes, not UTF-8)."""
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return encoded if len(encoded) <= PASSWORD_MAX_BYTES else None
