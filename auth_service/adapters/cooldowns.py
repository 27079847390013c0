"""Cooldowns kept in Redis (shared by every auth process), or in memory for ``memory://``."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import redis

from common.redis_replies import reply


class RedisCooldowns:
    def __init__(self, client: redis.Redis, key_prefix: str):
        self._redis = client
        self._prefix = f"{key_prefix}:cooldown"

    def start(self, key: str, seconds: int) -> float:
        if seconds <= 0:
            return 0.0
        redis_key = f"{self._prefix}:{hashlib.sha256(key.encode()).hexdigest()}"
        for _ in range(2):  # the running cooldown may expire between SET and PTTL: then start anew
            if self._redis.set(redis_key, 1, nx=True, ex=seconds):
                return 0.0
            remaining_ms: int = reply(self._redis.pttl(redis_key))
            if remaining_ms > 0:
                return remaining_ms / 1000
        return 0.001


class InMemoryCooldowns:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def start(self, key: str, seconds: int) -> float:
        now = self._clock()
        with self._lock:
            until = self._until.get(key, 0.0)
            if until > now:
                return until - now
            if seconds > 0:
                self._until[key] = now + seconds
            return 0.0
