"""What every concern's adapter of the account documents shares: the collection and its writes."""

from __future__ import annotations

from auth_service.adapters.serialized import SerializedWrites


class UsersCollection:
    def __init__(self, database, serialize_writes: bool = False):
        self._users = database["users"]
        self._locked = SerializedWrites(serialize_writes)
