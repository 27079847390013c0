"""The suppression list in Redis: one hash, address -> why, from where, since when.

Redis is the worker's store (the contract gives it the worker alone), and
every worker process reads the same list; it lasts as long as Redis's own
data (AOF or RDB persistence, replicas under Sentinel: docs/mail.md). The
address is kept lower-cased, as the services compare addresses.
"""

from __future__ import annotations

import json

import redis


def canonical(email: str) -> str:
    return email.strip().lower()


class RedisSuppressions:
    def __init__(self, client: redis.Redis, prefix: str):
        self._redis = client
        self._key = f"{prefix}:mail:suppressed"

    def is_suppressed(self, email: str) -> bool:
        return bool(self._redis.hexists(self._key, canonical(email)))

    def suppress(self, email: str, reason: str, source: str, now: float) -> bool:
        entry = json.dumps({"reason": reason[:200], "source": source, "since": round(now, 3)})
        return bool(self._redis.hsetnx(self._key, canonical(email), entry))

    def lift(self, email: str) -> bool:
        return bool(self._redis.hdel(self._key, canonical(email)))

    def entries(self) -> dict[str, dict[str, str]]:
        raw: dict[bytes, bytes] = self._redis.hgetall(self._key)  # type: ignore[assignment]
        return {email.decode(): json.loads(entry) for email, entry in raw.items()}


class MemorySuppressions:
    """The same list in this process, for unit tests and the bench's raw transport runs."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, str]] = {}

    def is_suppressed(self, email: str) -> bool:
        return canonical(email) in self._entries

    def suppress(self, email: str, reason: str, source: str, now: float) -> bool:
        key = canonical(email)
        if key in self._entries:
            return False
        self._entries[key] = {"reason": reason, "source": source, "since": str(now)}
        return True

    def lift(self, email: str) -> bool:
        return self._entries.pop(canonical(email), None) is not None

    def entries(self) -> dict[str, dict[str, str]]:
        return dict(self._entries)
