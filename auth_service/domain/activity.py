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
# Every admin API request is recorded under ``admin.`` and its endpoint (``admin.users.disable``), with the
# key's name; not with the account's own activity (the account it was about is its ``subject``).
ADMIN_PREFIX = "admin."
# Published as the account's record is erased: nothing is left to keep it in.
NOT_RECORDED = frozenset({"user.deleted"})

# What the activity answer shows at most: a person reads the recent ones; the admin API pages the rest.
RECENT_ACTIVITY_SHOWN = 100


@dataclass(frozen=True)
class Client:
    """Where a request came from, as the activity shows it: the address and the device's readable label;
    for an admin API request, the name of the admin key that made it (``actor``)."""

    ip: str | None
    device: str | None
    actor: str | None = None


@dataclass(frozen=True)
class Activity:
    id: str
    user_id: str | None  # None for an admin request, which is no account's own activity
    type: str
    occurred_at: datetime
    ip: str | None = None
    device: str | None = None
    # An admin API request: the key's name, the account it was about (if any) and its answer's status.
    actor: str | None = None
    subject: str | None = None
    status: int | None = None


@dataclass(frozen=True)
class AuditPosition:
    """Where a page of the audit trail ended: its last entry's time and id (a keyset, never a skip)."""

    occurred_at: datetime
    id: str


@dataclass(frozen=True)
class AuditQuery:
    """A page of the audit trail, newest first: one account's (its own activity and the admin requests about
    it), of one type, or everything; entries at or before ``since`` are past the retention."""

    since: datetime
    limit: int
    user_id: str | None = None
    type: str | None = None
    after: AuditPosition | None = None
