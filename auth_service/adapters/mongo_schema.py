"""The auth database's indexes and data migrations, in one place: what ``python -m auth_service migrate`` applies
before the service starts (compose runs it once), and what the service applies itself at start with the
in-process store (``MONGO_URI=mongomock://``), whose database lives in its process.

Creating an index that exists is a no-op, and each data migration touches only documents an earlier version
left, so applying them again changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pymongo

from auth_service.adapters.mongo_resend_requests import FORGOTTEN_AFTER_SECONDS
from auth_service.domain.accounts import Status

log = logging.getLogger(__name__)

ASC, DESC = pymongo.ASCENDING, pymongo.DESCENDING


@dataclass(frozen=True)
class Index:
    collection: str
    keys: list[tuple[str, int]]
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    # mongomock emulates TTL indexes by deleting on reads, from whichever request thread reads, and two
    # threads can race on one deletion; the service checks expiry itself, so the in-process store goes
    # without these.
    in_process: bool = True


INDEXES = (
    Index("users", [("email", ASC)], "email_unique", {"unique": True}),
    Index("users", [("outbox_due_at", ASC)], "outbox_due", {"sparse": True}),
    # Who reserves a left address (register and address change ask): a multikey index, sparse by nature.
    Index("users", [("address_history.email", ASC)], "left_addresses"),
    # The admin search: by status, and the disabled accounts (sparse: only they have the field), each in address
    # order, so that a prefix and a page are one index range (email_unique serves a search without a status).
    Index("users", [("status", ASC), ("email", ASC)], "status_email"),
    Index("users", [("disabled", ASC), ("email", ASC)], "disabled_email", {"sparse": True}),
    # Documents without expires_at (verified accounts) are never expired.
    Index("users", [("expires_at", ASC)], "pending_expiry", {"expireAfterSeconds": 0}, in_process=False),
    Index("resend_requests", [("due_at", ASC)], "due"),
    Index(
        "resend_requests",
        [("requested_at", ASC)],
        "forgotten",
        {"expireAfterSeconds": FORGOTTEN_AFTER_SECONDS},
        in_process=False,
    ),
    # expireAfterSeconds=0: MongoDB deletes each document once its own expires_at has passed (its TTL monitor
    # runs every 60 s; the code never relies on the deletion, it checks expiry).
    Index("refresh_tokens", [("expires_at", ASC)], "expires_ttl", {"expireAfterSeconds": 0}),
    Index("sessions", [("expires_at", ASC)], "expires_ttl", {"expireAfterSeconds": 0}),
    Index("sessions", [("user_id", ASC)], "sessions_by_user"),
    # The recent ends are read at start and at each reconnection of the session-end listener.
    Index("sessions", [("ended_at", ASC)], "sessions_by_end"),
    # The service checks a challenge's expiry itself; the index only clears what nobody verified.
    Index("sign_in_challenges", [("expires_at", ASC)], "expiry", {"expireAfterSeconds": 0}, in_process=False),
    Index("activity", [("user_id", ASC), ("occurred_at", DESC)], "activity_by_user"),
    # The admin audit's pages (newest first, a keyset on time and id): all, per type, and about one account (its
    # own activity has activity_by_user).
    Index("activity", [("occurred_at", DESC), ("_id", DESC)], "audit_newest"),
    Index("activity", [("type", ASC), ("occurred_at", DESC), ("_id", DESC)], "audit_by_type"),
    Index("activity", [("subject", ASC), ("occurred_at", DESC), ("_id", DESC)], "audit_by_subject"),
    Index("activity", [("expires_at", ASC)], "activity_ttl", {"expireAfterSeconds": 0}, in_process=False),
    Index("signing_keys", [("generation", ASC)], "one_key_per_generation", {"unique": True}),
)


def migrate(database, *, unverified_ttl_seconds: int, now: datetime, in_process: bool) -> None:
    """Create every index, then run the data migrations."""
    for index in INDEXES:
        if in_process and not index.in_process:
            continue
        database[index.collection].create_index(index.keys, name=index.name, **index.options)
    lifetime = timedelta(seconds=unverified_ttl_seconds)
    if expire_unmarked_pending(database, now + lifetime):
        log.info("pending accounts stored before accounts expired now expire too", extra={"after": str(lifetime)})


def expire_unmarked_pending(database, expires_at: datetime) -> int:
    """Give pending accounts stored before accounts expired a lifetime from now; returns how many."""
    result = database["users"].update_many(
        {"status": Status.PENDING_VERIFICATION.value, "expires_at": {"$exists": False}},
        {"$set": {"expires_at": expires_at}},
    )
    return result.modified_count
