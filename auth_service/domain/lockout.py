"""Failed logins in a row and the lock they set. Pure rules, no I/O.

A streak is the failed logins since the last success (or the last lock): the
owner is warned once when it reaches the warning threshold, and the account is
locked when it reaches the lockout threshold; the lock starts a new streak.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from auth_service.domain.accounts import User


@dataclass(frozen=True)
class LockoutPolicy:
    warning_threshold: int
    lockout_threshold: int
    lockout_seconds: int

    @property
    def lock_length(self) -> timedelta:
        return timedelta(seconds=self.lockout_seconds)


class Step(enum.Enum):
    COUNT = "count"
    WARN = "warn"
    LOCK = "lock"


@dataclass(frozen=True)
class Failure:
    """What one more failure does to a streak of ``before``: the count to store and what it sets off."""

    before: int
    after: int
    step: Step


def after_failure(before: int, policy: LockoutPolicy) -> Failure:
    count = before + 1
    if count >= policy.lockout_threshold:
        return Failure(before, 0, Step.LOCK)
    if count == policy.warning_threshold:
        return Failure(before, count, Step.WARN)
    return Failure(before, count, Step.COUNT)


def is_locked(user: User, now: datetime) -> bool:
    """A lock holds until its time, whether or not the broker's timer has ended it yet."""
    return user.locked_until is not None and user.locked_until > now
