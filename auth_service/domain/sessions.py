"""Sessions and their refresh tokens. Pure Python, no I/O.

A session (a "family") begins at a login and lives on through each rotation
of its refresh token. A refresh token works once; a used one presented again
is judged by ``judge_presented``: within the grace window it is a client that
lost the answer to its refresh (or two parallel refreshes of one app), after
it a copy in somebody else's hands, and the whole family ends.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

REFRESH_TOKEN_BYTES = 32  # 256 bits from secrets: out of reach of guessing, so a plain hash suffices


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def new_family_id() -> str:
    return secrets.token_hex(16)


def refresh_token_hash(token: str) -> str:
    """What is stored in place of the token. SHA-256, unkeyed and unsalted: the token has 256 bits
    of entropy, so no dictionary or brute force can invert it, and lookups stay one index probe."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class RefreshRecord:
    """A refresh token as stored: its hash and what it belongs to, never the token itself."""

    token_hash: str
    family_id: str
    user_id: str
    token_version: int
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    parent_hash: str | None = None


@dataclass(frozen=True)
class Session:
    """A login and every refresh that descends from it. ``device`` is the readable label shown in the
    session list, ``device_key`` the hash that identifies the device (domain/devices.py), ``ip`` the
    address of the last login or refresh."""

    family_id: str
    user_id: str
    token_version: int
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    device: str | None = None
    device_key: str | None = None
    ip: str | None = None
    last_used_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.ended_at is None

    def in_use(self, token_version: int, now: datetime) -> bool:
        """Can this session still refresh: not ended, not expired, not refused by a password change?"""
        return self.live and self.expires_at > now and self.token_version == token_version


class Presented(enum.Enum):
    """What a refresh token that could not be claimed for rotation turns out to be."""

    UNKNOWN = "unknown"  # never issued, or cleaned up after its expiry
    EXPIRED = "expired"
    RETRY_WITHIN_GRACE = "retry_within_grace"
    REUSED = "reused"


def judge_presented(record: RefreshRecord | None, now: datetime, grace: timedelta) -> Presented:
    """Judge a token that rotation did not claim (already used, expired or unknown).

    The grace window counts from the first use, which is recorded once, so
    presenting a token again and again cannot stretch it.
    """
    if record is None:
        return Presented.UNKNOWN
    if record.expires_at <= now:
        return Presented.EXPIRED
    if record.used_at is not None and now - record.used_at < grace:
        return Presented.RETRY_WITHIN_GRACE
    return Presented.REUSED


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (the scheme's name)
