"""Sessions and refresh tokens in MongoDB: two collections, each with a TTL index for cleanup.

``refresh_tokens`` holds one document per token, keyed by the token's SHA-256
(the token itself is never stored). ``sessions`` holds one document per
family; ending a family is one write to it, and every refresh reads it, so a
successor inserted while the family was being ended is refused all the same.
"""

from __future__ import annotations

from datetime import datetime

import pymongo

from auth_service.adapters.mongo_support import aware
from auth_service.adapters.serialized import SerializedWrites
from auth_service.domain.sessions import RefreshRecord, Session


class MongoSessionRepository:
    def __init__(self, database, serialize_writes: bool = False):
        self._tokens = database["refresh_tokens"]
        self._sessions = database["sessions"]
        self._locked = SerializedWrites(serialize_writes)

    def start(self, session: Session, first: RefreshRecord) -> None:
        self._locked(self._sessions.insert_one, _session_document(session))
        self._locked(self._tokens.insert_one, _record_document(first))

    def add(self, record: RefreshRecord, ip: str | None = None) -> None:
        """Store a successor and keep its family alive at least as long as it. The same update notes
        when and from where the session was last used, so the session list costs a refresh nothing more."""
        self._locked(self._tokens.insert_one, _record_document(record))
        touched: dict = {"last_used_at": record.issued_at}
        if ip is not None:
            touched["ip"] = ip
        self._locked(
            self._sessions.update_one,
            {"_id": record.family_id},
            {"$max": {"expires_at": record.expires_at}, "$set": touched},
        )

    def claim(self, token_hash: str, now: datetime) -> RefreshRecord | None:
        """Mark an unused, unexpired token used, atomically: of parallel claims, one gets the record."""
        document = self._locked(
            self._tokens.find_one_and_update,
            {"_id": token_hash, "used_at": None, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now}},
            return_document=pymongo.ReturnDocument.AFTER,
        )
        return _record(document)

    def find(self, token_hash: str) -> RefreshRecord | None:
        return _record(self._tokens.find_one({"_id": token_hash}))

    def session(self, family_id: str) -> Session | None:
        return _session(self._sessions.find_one({"_id": family_id}))

    def end(self, family_id: str, at: datetime, reason: str) -> bool:
        result = self._locked(
            self._sessions.update_one,
            {"_id": family_id, "ended_at": None},
            {"$set": {"ended_at": at, "ended_reason": reason}},
        )
        return result.modified_count == 1

    def live_of(self, user_id: str, token_version: int, now: datetime) -> list[Session]:
        """The account's sessions that can still refresh, most recently started first."""
        documents = self._sessions.find(
            {"user_id": user_id, "ended_at": None, "expires_at": {"$gt": now}, "token_version": token_version}
        ).sort("created_at", pymongo.DESCENDING)
        return [session for session in map(_session, documents) if session is not None]

    def end_others(self, user_id: str, keep: str | None, at: datetime, reason: str) -> list[str]:
        """End every live session of the account but ``keep``; returns the ids of those this call ended."""
        query: dict = {"user_id": user_id, "ended_at": None}
        if keep is not None:
            query["_id"] = {"$ne": keep}
        ended = [document["_id"] for document in self._sessions.find(query, {"_id": 1})]
        return [family_id for family_id in ended if self.end(family_id, at, reason)]

    def end_all(self, user_id: str, below_version: int, at: datetime, reason: str) -> int:
        """End the user's live sessions opened under a token version older than ``below_version``."""
        result = self._locked(
            self._sessions.update_many,
            {"user_id": user_id, "ended_at": None, "token_version": {"$lt": below_version}},
            {"$set": {"ended_at": at, "ended_reason": reason}},
        )
        return result.modified_count

    def erase(self, user_id: str) -> int:
        """Delete every session and refresh token of the account (its erasure), ended or not."""
        self._locked(self._tokens.delete_many, {"user_id": user_id})
        return self._locked(self._sessions.delete_many, {"user_id": user_id}).deleted_count

    def of_user(self, user_id: str) -> tuple[list[dict], list[dict]]:
        """The account's sessions and refresh-token records, as stored (the export)."""
        return list(self._sessions.find({"user_id": user_id})), list(self._tokens.find({"user_id": user_id}))

    def ended_since(self, since: datetime) -> list[tuple[str, datetime]]:
        documents = self._sessions.find({"ended_at": {"$gte": since}}, {"ended_at": 1})
        return [(document["_id"], aware(document["ended_at"])) for document in documents]


def _record_document(record: RefreshRecord) -> dict:
    return {
        "_id": record.token_hash,
        "family_id": record.family_id,
        "user_id": record.user_id,
        "token_version": record.token_version,
        "issued_at": record.issued_at,
        "expires_at": record.expires_at,
        "used_at": record.used_at,
        "parent_hash": record.parent_hash,
    }


def _record(document: dict | None) -> RefreshRecord | None:
    if document is None:
        return None
    return RefreshRecord(
        token_hash=document["_id"],
        family_id=document["family_id"],
        user_id=document["user_id"],
        token_version=document["token_version"],
        issued_at=aware(document["issued_at"]),
        expires_at=aware(document["expires_at"]),
        used_at=aware(document.get("used_at")),
        parent_hash=document.get("parent_hash"),
    )


def _session_document(session: Session) -> dict:
    return {
        "_id": session.family_id,
        "user_id": session.user_id,
        "token_version": session.token_version,
        "created_at": session.created_at,
        "expires_at": session.expires_at,
        "ended_at": session.ended_at,
        "device": session.device,
        "device_key": session.device_key,
        "ip": session.ip,
        "last_used_at": session.last_used_at,
    }


def _session(document: dict | None) -> Session | None:
    if document is None:
        return None
    return Session(
        family_id=document["_id"],
        user_id=document["user_id"],
        token_version=document["token_version"],
        created_at=aware(document["created_at"]),
        expires_at=aware(document["expires_at"]),
        ended_at=aware(document.get("ended_at")),
        device=document.get("device"),
        device_key=document.get("device_key"),
        ip=document.get("ip"),
        last_used_at=aware(document.get("last_used_at")),
    )
