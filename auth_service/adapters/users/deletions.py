"""A deletion's grace, its restore links, and the erasure (service_layer/flows/deletion.py)."""

from __future__ import annotations

from datetime import datetime

import pymongo

from auth_service.adapters.users.collection import UsersCollection
from auth_service.adapters.users.documents import (
    deletion_document,
    each,
    user_of,
)
from auth_service.domain.accounts import Deletion, Status, User
from auth_service.ports import OutboxEntry


class MongoDeletions(UsersCollection):
    def begin_deletion(
        self, user_id: str, submission_id: str, deletion: Deletion, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        """Make a confirmed account pending deletion, once per confirmed code (the stored change is
        spent in the same update), with its notice and timer; None if the change is gone."""
        document = self._locked(
            self._users.find_one_and_update,
            {"_id": user_id, "status": Status.VERIFIED.value, "pending_changes.submission_id": submission_id},
            {
                "$pull": {"pending_changes": {"submission_id": submission_id}},
                "$set": {
                    "status": Status.PENDING_DELETION.value,
                    "deletion": deletion_document(deletion),
                    "restore_links": [],
                    "outbox_due_at": publish_after,
                },
                "$push": {"outbox": each(outbox)},
            },
            return_document=pymongo.ReturnDocument.AFTER,
        )
        return user_of(document)

    def add_restore_link(self, user_id: str, deletion_id: str, digest: str, expires_at: datetime) -> bool:
        """Keep the digest of the restore link mailed for deletion ``deletion_id`` (once, while it is pending)."""
        result = self._locked(
            self._users.update_one,
            {
                "_id": user_id,
                "status": Status.PENDING_DELETION.value,
                "deletion.id": deletion_id,
                "restore_links.digest": {"$ne": digest},
            },
            {"$push": {"restore_links": {"digest": digest, "expires_at": expires_at}}},
        )
        return result.modified_count == 1

    def restore_link_live(self, user_id: str, digest: str, now: datetime) -> bool:
        document = self._users.find_one(
            {
                "_id": user_id,
                "status": Status.PENDING_DELETION.value,
                "restore_links": {"$elemMatch": {"digest": digest, "expires_at": {"$gt": now}}},
            },
            {"_id": 1},
        )
        return document is not None

    def restore(self, user_id: str, digest: str | None, deletion_id: str | None, now: datetime) -> User | None:
        """End a pending deletion, once: by a live restore link (``digest``), or by deletion id (a "this wasn't
        me" link that undid the address the deletion was proved with). Every restore link goes with it."""
        query: dict = {"_id": user_id, "status": Status.PENDING_DELETION.value, "erasing_at": {"$exists": False}}
        if digest is not None:
            query["restore_links"] = {"$elemMatch": {"digest": digest, "expires_at": {"$gt": now}}}
        if deletion_id is not None:
            query["deletion.id"] = deletion_id
        document = self._locked(
            self._users.find_one_and_update,
            query,
            {
                "$set": {"status": Status.VERIFIED.value, "restored_at": now},
                "$unset": {"deletion": "", "restore_links": ""},
            },
            return_document=pymongo.ReturnDocument.AFTER,
        )
        return user_of(document)

    def begin_erasure(
        self, user_id: str, deletion_id: str, now: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool:
        """Store what the erasure announces (once: a redelivered timer finds it begun); from here on the
        deletion cannot be undone."""
        result = self._locked(
            self._users.update_one,
            {
                "_id": user_id,
                "status": Status.PENDING_DELETION.value,
                "deletion.id": deletion_id,
                "erasing_at": {"$exists": False},
            },
            {"$set": {"erasing_at": now, "outbox_due_at": publish_after}, "$push": {"outbox": each(outbox)}},
        )
        return result.modified_count == 1

    def erasing(self, user_id: str, deletion_id: str) -> bool:
        document = self._users.find_one(
            {"_id": user_id, "deletion.id": deletion_id, "erasing_at": {"$exists": True}}, {"_id": 1}
        )
        return document is not None

    def erase(self, user_id: str) -> bool:
        """Delete the account's document: the last step of its erasure."""
        return self._locked(self._users.delete_one, {"_id": user_id}).deleted_count == 1
