"""The key codes are derived and hashed under, when ``CODE_HMAC_KEY`` is not set."""

from __future__ import annotations

import secrets

import redis

from common.redis_replies import reply


class ConfiguredCodeKey:
    """The key from ``CODE_HMAC_KEY``."""

    def __init__(self, value: str):
        self._value = value

    def __call__(self) -> str:
        return self._value


class SharedCodeKey:
    """A random key drawn once from ``secrets`` and kept in Redis, so every worker uses the same one.

    It is read on every use rather than cached: if Redis restarts, the pending
    codes are gone and a new key is drawn, and no worker may keep the old one.
    Setting ``CODE_HMAC_KEY`` keeps the key out of Redis altogether, so that a
    copy of Redis alone cannot be used to recompute codes.
    """

    def __init__(self, client: redis.Redis, key_prefix: str):
        self._redis = client
        self._name = f"{key_prefix}:code-hmac-key"

    def __call__(self) -> str:
        value: bytes | str | None = reply(self._redis.get(self._name))
        if value is None:
            self._redis.set(self._name, secrets.token_hex(32), nx=True)
            value = reply(self._redis.get(self._name))
        if value is None:  # deleted again in between: only a flushed Redis does that
            raise redis.ConnectionError("the shared code key vanished as it was written")
        return value.decode() if isinstance(value, bytes) else value
