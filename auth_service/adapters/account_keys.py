"""Auth's Redis keys that name an account: its addresses' code cooldowns and its rate-limit counters.

Keys never spell out an address or an id: each holds a SHA-256 of one
(adapters/cooldowns.py, entrypoints/http/ratelimits.py). Erasing an account
deletes every key that holds the hash of its address or of its id.
"""

from __future__ import annotations

import hashlib

import redis

from common.messaging.messages import Purpose
from common.redis_replies import reply

SCAN_BATCH = 500


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def account_key_hashes(email: str, user_id: str) -> list[str]:
    """Every hash a key of auth's may hold for this account: the address (per-address limits), the id
    (per-account limits), and each purpose's cooldown of the address."""
    return [_sha256(email), _sha256(user_id), *(_sha256(f"code:{purpose}:{email}") for purpose in Purpose)]


class RedisAccountKeys:
    def __init__(self, client: redis.Redis, key_prefix: str):
        self._redis = client
        # Auth's own keys only (RATELIMIT_KEY_PREFIX): the worker's, in the same Redis maybe, are the worker's.
        self._prefix = key_prefix

    def erase(self, email: str, user_id: str) -> int:
        """Delete every key naming the account's address or id; returns how many were deleted."""
        deleted = 0
        for hashed in account_key_hashes(email, user_id):
            # SCAN, not KEYS: a deletion must not stall Redis for the other requests.
            names = list(self._redis.scan_iter(match=f"*{self._prefix}*{hashed}*", count=SCAN_BATCH))
            if names:
                deleted += int(reply(self._redis.delete(*names)))
        return deleted


class NoAccountKeys:
    """``RATELIMIT_STORAGE_URI=memory://``: the counters live in each process and expire by themselves."""

    def erase(self, email: str, user_id: str) -> int:
        return 0
