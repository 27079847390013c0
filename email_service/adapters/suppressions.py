"""The suppression list in Redis: one hash, address -> why, from where, since when.

Redis is the worker's store (the contract gives it the worker alone), and
every worker process reads the same list; it lasts as long as Redis's own
data (AOF or RDB persistence, replicas under Sentinel: docs/mail.md). The
address is kept lower-cased, as the services compare addresses.

A mail must not wait on a Redis round trip to learn that its address is not
suppressed (nearly every address): each process keeps a copy of the list and
checks, at most once per ``refresh_seconds`` and on the mail path, a version
number that every change raises, reading the whole list again only when it
moved. A change made by another process is therefore seen within
``refresh_seconds``; one made by this process at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import redis

from common.redis_replies import reply

REFRESH_SECONDS = 1.0


def canonical(email: str) -> str:
    return email.strip().lower()


class RedisSuppressions:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._redis = client
        self._key = f"{prefix}:mail:suppressed"
        self._version_key = f"{prefix}:mail:suppressed:version"
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._addresses: frozenset[str] = frozenset()
        self._version: bytes | None = None
        self._checked_at: float | None = None

    def is_suppressed(self, email: str) -> bool:
        self._refresh()
        return canonical(email) in self._addresses

    def _refresh(self) -> None:
        now = self._clock()
        checked_at = self._checked_at
        if checked_at is not None and now - checked_at < self._refresh_seconds:
            return
        # One thread looks; the others go on with the copy they have.
        if not self._lock.acquire(blocking=checked_at is None):
            return
        try:
            if self._checked_at is not None and now - self._checked_at < self._refresh_seconds:
                return
            version = reply(self._redis.get(self._version_key))
            if version != self._version or self._checked_at is None:
                addresses = frozenset(key.decode() for key in reply(self._redis.hkeys(self._key)))
                self._addresses, self._version = addresses, version
            self._checked_at = now
        finally:
            self._lock.release()

    def suppress(self, email: str, reason: str, source: str, now: float) -> bool:
        address = canonical(email)
        entry = json.dumps({"reason": reason[:200], "source": source, "since": round(now, 3)})
        pipeline = self._redis.pipeline(transaction=True)
        pipeline.hsetnx(self._key, address, entry)
        pipeline.incr(self._version_key)
        added, _ = pipeline.execute()
        with self._lock:
            self._addresses = self._addresses | {address}
        return bool(added)

    def lift(self, email: str) -> bool:
        address = canonical(email)
        pipeline = self._redis.pipeline(transaction=True)
        pipeline.hdel(self._key, address)
        pipeline.incr(self._version_key)
        removed, _ = pipeline.execute()
        with self._lock:
            self._addresses = self._addresses - {address}
        return bool(removed)

    def entries(self) -> dict[str, dict[str, str]]:
        raw: dict[bytes, bytes] = reply(self._redis.hgetall(self._key))
        return {email.decode(): json.loads(entry) for email, entry in raw.items()}
