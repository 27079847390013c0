"""Codes asked for by address (resend, forgot) in MongoDB: written by the request, acted on by the relay.

Every such request, for any address, is answered after the same single insert here,
so the answer's timing does not depend on whether the address has a pending
account (docs/security.md, "Resend timing"). A request is claimed with a lease, so
that several auth processes do not act on it twice, and deleted once done.
"""

from __future__ import annotations

from datetime import datetime

import pymongo

from auth_service.adapters.mongo_support import aware
from auth_service.adapters.serialized import SerializedWrites
from auth_service.ports import ResendRequest
from common.messaging.messages import Purpose

# A request is acted on within a second; one left over (every relay stopped) is dropped after a day.
FORGOTTEN_AFTER_SECONDS = 86400


class MongoResendRequests:
    def __init__(self, database, serialize_writes: bool = False):
        self._requests = database["resend_requests"]
        self._write = SerializedWrites(serialize_writes)

    def add(self, request: ResendRequest) -> None:
        self._write(
            self._requests.insert_one,
            {
                "_id": request.id,
                "email": request.email,
                "requested_at": request.requested_at,
                "request_id": request.request_id,
                "due_at": request.requested_at,
                "purpose": request.purpose.value,
            },
        )

    def claim(self, now: datetime, lease_until: datetime) -> ResendRequest | None:
        document = self._write(
            self._requests.find_one_and_update,
            {"due_at": {"$lte": now}},
            {"$set": {"due_at": lease_until}},
            sort=[("due_at", pymongo.ASCENDING)],
        )
        if document is None:
            return None
        return ResendRequest(
            id=document["_id"],
            email=document["email"],
            requested_at=aware(document["requested_at"]),
            request_id=document.get("request_id"),
            # Stored before forgot shared this collection: a resend.
            purpose=Purpose(document.get("purpose", Purpose.VERIFY_EMAIL)),
        )

    def done(self, request_id: str) -> None:
        self._write(self._requests.delete_one, {"_id": request_id})

    def erase(self, email: str) -> int:
        """Forget the asks of an address (its account is being erased)."""
        return self._write(self._requests.delete_many, {"email": email}).deleted_count

    def of_address(self, email: str) -> list[dict]:
        """The stored asks of an address, as stored (the export)."""
        return list(self._requests.find({"email": email}))
