"""Each account's security activity in MongoDB, one document per entry, kept AUDIT_RETENTION_DAYS.

An event's entry is keyed by its ``event_id``, so the outbox handing the same
event over twice (a redelivery, the relay after a request) keeps one entry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pymongo

from auth_service.adapters.mongo_support import aware
from auth_service.adapters.serialized import SerializedWrites
from auth_service.domain.activity import Activity, AuditQuery


class MongoActivity:
    def __init__(self, database, retention_days: int, serialize_writes: bool = False):
        self._activity = database["activity"]
        self._retention = timedelta(days=retention_days)
        self._locked = SerializedWrites(serialize_writes)

    def keep(self, activity: Activity) -> None:
        """Store the entry once: a second hand-over of the same id changes nothing."""
        document = {
            "user_id": activity.user_id,
            "type": activity.type,
            "occurred_at": activity.occurred_at,
            "ip": activity.ip,
            "device": activity.device,
            "expires_at": activity.occurred_at + self._retention,
        }
        for field in ("actor", "subject", "status"):
            value = getattr(activity, field)
            if value is not None:
                document[field] = value
        self._locked(self._activity.update_one, {"_id": activity.id}, {"$setOnInsert": document}, upsert=True)

    def recent(self, user_id: str, since: datetime, limit: int) -> list[Activity]:
        """The account's entries within the retention (``since`` on), newest first. The expiry is checked
        here too: MongoDB's TTL monitor deletes only once a minute, mongomock's not at all."""
        documents = (
            self._activity.find({"user_id": user_id, "occurred_at": {"$gt": since}})
            .sort("occurred_at", pymongo.DESCENDING)
            .limit(limit)
        )
        return [_activity(document) for document in documents]

    def documents_of(self, user_id: str) -> list[dict]:
        """Every stored entry of the account, as stored (the export)."""
        return list(self._activity.find({"user_id": user_id}).sort("occurred_at", pymongo.DESCENDING))

    def page(self, query: AuditQuery) -> list[Activity]:
        """One page of the audit trail, newest first, after ``query.after``: an index range, never a skip."""
        conditions: list[dict] = [{"occurred_at": {"$gt": query.since}}]
        if query.user_id is not None:
            conditions.append({"$or": [{"user_id": query.user_id}, {"subject": query.user_id}]})
        if query.type is not None:
            conditions.append({"type": query.type})
        if query.after is not None:
            at, last = query.after.occurred_at, query.after.id
            conditions.append({"$or": [{"occurred_at": {"$lt": at}}, {"occurred_at": at, "_id": {"$lt": last}}]})
        documents = (
            self._activity.find({"$and": conditions})
            .sort([("occurred_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)])
            .limit(query.limit)
        )
        return [_activity(document) for document in documents]

    def erase(self, user_id: str) -> int:
        return self._locked(self._activity.delete_many, {"user_id": user_id}).deleted_count


def _activity(document: dict) -> Activity:
    return Activity(
        id=document["_id"],
        user_id=document.get("user_id"),
        type=document["type"],
        occurred_at=aware(document["occurred_at"]),
        ip=document.get("ip"),
        device=document.get("device"),
        actor=document.get("actor"),
        subject=document.get("subject"),
        status=document.get("status"),
    )
