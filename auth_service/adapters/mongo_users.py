"""Users in MongoDB, each document carrying its own outbox of messages to publish.

Keeping the outbox inside the user document makes "user stored" and "message
stored" one atomic single-document write, with no multi-document transaction.

A pending account carries ``expires_at``: a TTL index deletes it then (the
service also treats it as absent from that moment, since the TTL monitor runs
only once a minute). A later registration of a pending address rewrites the
document in place, compare-and-set on ``code_seq``, so that of two parallel
registrations exactly one wins each round and the other reads again.
"""

from __future__ import annotations

from datetime import datetime

import pymongo

from auth_service.adapters.users.accounts import MongoAccounts
from auth_service.adapters.users.credentials import MongoCredentials
from auth_service.adapters.users.deletions import MongoDeletions
from auth_service.adapters.users.devices import MongoDevices
from auth_service.adapters.users.documents import PENDING
from auth_service.adapters.users.outbox import MongoOutbox
from auth_service.adapters.users.pending_changes import MongoPendingChanges
from auth_service.adapters.users.recovery_links import MongoRecoveryLinks
from auth_service.adapters.users.support import MongoSupport


class MongoUserRepository(
    MongoAccounts,
    MongoCredentials,
    MongoPendingChanges,
    MongoDevices,
    MongoRecoveryLinks,
    MongoDeletions,
    MongoOutbox,
    MongoSupport,
):
    """Every port of the account documents over the one collection: what the wiring hands each flow."""

    def __init__(self, database, serialize_writes: bool = False, ttl_index: bool = True):
        super().__init__(database, serialize_writes)
        # mongomock emulates TTL indexes by deleting on reads, from whichever
        # thread reads, and two request threads can race on one deletion; the
        # service's own expiry check is enough for the in-process store.
        self._ttl_index = ttl_index

    def ensure_indexes(self) -> None:
        self._users.create_index([("email", pymongo.ASCENDING)], unique=True, name="email_unique")
        self._users.create_index([("outbox_due_at", pymongo.ASCENDING)], sparse=True, name="outbox_due")
        # Who reserves a left address (register and address change ask): a multikey index, sparse by nature.
        self._users.create_index([("address_history.email", pymongo.ASCENDING)], name="left_addresses")
        # The admin search: by status, and the disabled accounts (sparse: only they have the field), each in
        # address order, so that a prefix and a page are one index range (email_unique serves no status).
        self._users.create_index([("status", pymongo.ASCENDING), ("email", pymongo.ASCENDING)], name="status_email")
        self._users.create_index(
            [("disabled", pymongo.ASCENDING), ("email", pymongo.ASCENDING)], sparse=True, name="disabled_email"
        )
        if self._ttl_index:
            # Documents without expires_at (verified accounts) are never expired.
            self._users.create_index([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0, name="pending_expiry")

    def expire_unmarked_pending(self, expires_at: datetime) -> int:
        """Give pending accounts stored before accounts expired a lifetime from now; returns how many."""
        result = self._locked(
            self._users.update_many,
            {"status": PENDING, "expires_at": {"$exists": False}},
            {"$set": {"expires_at": expires_at}},
        )
        return result.modified_count
