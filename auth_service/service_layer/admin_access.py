"""Who may use the admin API: the admin key a request presents, and the scope its action needs.

No key, a key of no known form, an unknown id, a wrong secret or a revoked key
(its line gone from ADMIN_KEYS_FILE) all answer the same ``401 invalid_token``;
a good key without the scope answers ``403 forbidden``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from auth_service.domain.admin_keys import AdminKey, parse_presented
from auth_service.domain.errors import Forbidden, InvalidTokenError

KEY_REFUSED = "The admin key is missing, unknown or revoked."


class AdminKeys(Protocol):
    def find(self, key_id: str) -> AdminKey | None: ...


class AdminAccess:
    def __init__(self, keys: AdminKeys, on_used: Callable[[AdminKey], object] = lambda key: None):
        self._keys = keys
        self._on_used = on_used

    def authenticate(self, presented: str | None) -> AdminKey:
        parsed = parse_presented(presented)
        if parsed is None:
            raise InvalidTokenError(KEY_REFUSED)
        key_id, secret = parsed
        key = self._keys.find(key_id)
        if key is None or not key.matches(secret):
            raise InvalidTokenError(KEY_REFUSED)
        self._on_used(key)
        return key

    def authorize(self, key: AdminKey, scope: str) -> None:
        if not key.allows(scope):
            raise Forbidden(f"This admin key does not have the scope {scope}.")
