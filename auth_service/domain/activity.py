"""An account's security activity: what happened, when, from which address and device. Pure Python, no I/O.

Account events (``user.*``, the events table) are recorded under their routing
key; what is recorded but not published has a name of the same form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

LOGIN = "user.login"
LOGIN_FAILED = "user.login_failed"
MFA_ENABLED = "user.mfa_enabled"
MFA_DISABLED = "user.mfa_disabled"
DELETION_REQUESTED = "user.deletion_requested"
DELETION_CANCELLED = "user.deletion_cancelled"
# Published as the account's record is erased: nothing is left to keep it in.
NOT_RECORDED = frozenset({"user.deleted"})

# What the activity answer shows at most: a person reads the recent ones; the admin API pages the rest.
RECENT_ACTIVITY_SHOWN = 100


@dataclass(frozen=True)
class Client:
    """Where a request came from, as the activity shows it: the address and the device's readable label."""

    ip: str | None
    device: str | None


@dataclass(frozen=True)
class Activity:
    id: str
    user_id: str
    type: str
    occurred_at: datetime
    ip: str | None = None
    device: str | None = None
