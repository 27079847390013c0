"""Auth's copy of the suppression list, in MongoDB: one document per address, ``_id`` the address.

The worker's list (Redis) is the one that stops mail; this copy is what auth
answers from (``email_deliverable``), kept in step by the broker: the worker
tells auth of a permanent refusal, auth tells the worker of a provider's
bounce or complaint report, and an operator's lift reaches both.
"""

from __future__ import annotations

from datetime import datetime

import pymongo.errors

from auth_service.adapters.serialized import SerializedWrites


class MongoSuppressions:
    def __init__(self, database, serialize_writes: bool = False):
        self._suppressions = database["mail_suppressions"]
        self._write = SerializedWrites(serialize_writes)

    def add(self, email: str, reason: str, source: str, now: datetime) -> bool:
        """True if the address was not on the list."""
        try:
            self._write(self._suppressions.insert_one, {"_id": email, "reason": reason, "source": source, "since": now})
        except pymongo.errors.DuplicateKeyError:
            return False
        return True

    def remove(self, email: str) -> bool:
        return self._write(self._suppressions.delete_one, {"_id": email}).deleted_count > 0

    def contains(self, email: str) -> bool:
        return self._suppressions.find_one({"_id": email}, {"_id": 1}) is not None
