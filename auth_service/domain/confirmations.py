"""Which code confirmed an account, kept as a keyed hash: an app retrying after a 202 is answered 200 again.

The code itself is never stored. The hash is an HMAC-SHA256 under a key
derived from the service's secret and bound to the account id, so a copy of
the database alone cannot be used to test the million possible codes, and
the same code of another account hashes differently.
"""

from __future__ import annotations

import hashlib
import hmac

KEY_LABEL = b"auth_service:confirming-code:v1"


class ConfirmingCodes:
    def __init__(self, key: bytes):
        self._key = key

    @classmethod
    def from_secret(cls, secret: str) -> ConfirmingCodes:
        # A key of its own, derived from the secret, so this hash and the JWT signatures never share a key.
        return cls(hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest())

    def tag(self, user_id: str, code: str) -> str:
        return hmac.new(self._key, f"{user_id}\x00{code}".encode(), hashlib.sha256).hexdigest()

    def matches(self, stored: str | None, user_id: str, code: str) -> bool:
        if not stored:
            return False
        return hmac.compare_digest(stored.encode(), self.tag(user_id, code).encode())
