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

from auth_service.adapters.users.accounts import MongoAccounts
from auth_service.adapters.users.credentials import MongoCredentials
from auth_service.adapters.users.deletions import MongoDeletions
from auth_service.adapters.users.devices import MongoDevices
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
    """Every port of the account documents over the one collection: what the wiring hands each flow. (Its
    indexes, and the migrations of documents earlier versions stored, are in mongo_schema.py.)"""
