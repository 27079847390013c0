"""Password hashing with bcrypt at a configurable cost."""

from __future__ import annotations

import bcrypt


class PasswordHasher:
    def __init__(self, rounds: int):
        self._rounds = rounds
        # Checked against when the address is unknown, so that a 401 takes as
        # long for an unknown address as for a wrong password.
        self._dummy_hash = bcrypt.hashpw(b"dummy password for timing", bcrypt.gensalt(rounds))

    def hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._rounds)).decode()

    def verify(self, password: str, password_hash: str) -> bool:
        return bcrypt.checkpw(password.encode(), password_hash.encode())

    def burn_time(self, password: str) -> None:
        bcrypt.checkpw(password.encode(), self._dummy_hash)

    def needs_rehash(self, password_hash: str) -> bool:
        # "$2b$12$..." carries its cost in the second field.
        try:
            return int(password_hash.split("$")[2]) < self._rounds
        except (IndexError, ValueError):
            return True
