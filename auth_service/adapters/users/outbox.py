"""Each account document's outbox, and the relay's claims on it (ports.OutboxStore)."""

from __future__ import annotations

from datetime import datetime

import pymongo

from auth_service.adapters.users.collection import UsersCollection
from auth_service.adapters.users.documents import (
    entry_document,
    entry_of,
)
from auth_service.ports import OutboxEntry


class MongoOutbox(UsersCollection):
    def add_outbox(self, user_id: str, outbox: OutboxEntry, publish_after: datetime) -> None:
        self._locked(
            self._users.update_one,
            {"_id": user_id},
            {"$push": {"outbox": entry_document(outbox)}, "$set": {"outbox_due_at": publish_after}},
        )

    def outbox_entries(self, user_id: str) -> list[OutboxEntry]:
        """The messages still waiting in the account's outbox, oldest first."""
        document = self._users.find_one({"_id": user_id}, {"outbox": 1})
        return [entry_of(raw) for raw in (document or {}).get("outbox", [])]

    def outbox_delivered(self, user_id: str, message_id: str, others_pending: bool = False) -> None:
        """Take the entry out; once the outbox is empty, the relay stops watching the account.

        Most outboxes hold one entry at a time, so the first write assumes it: one
        write instead of two. With ``others_pending`` (the rest of one write is still
        to be delivered, a registration's event after its code request) the entry is
        only pulled, also one write. Otherwise the entry is pulled and the document
        read back, and whichever delivery found the outbox empty ends the watch.
        A hint that turned out wrong (the rest left meanwhile) leaves an empty
        outbox watched: the relay's next claim finds it empty and ends the watch.
        """
        pull = {"$pull": {"outbox": {"message_id": message_id}}}
        if others_pending:
            self._locked(self._users.update_one, {"_id": user_id}, pull)
            return
        only_entry = {"_id": user_id, "outbox": {"$size": 1}, "outbox.message_id": message_id}
        if self._locked(self._users.update_one, only_entry, {**pull, "$unset": {"outbox_due_at": ""}}).matched_count:
            return
        after = self._locked(
            self._users.find_one_and_update,
            {"_id": user_id},
            pull,
            projection={"outbox.message_id": 1, "outbox_due_at": 1},
            return_document=pymongo.ReturnDocument.AFTER,
        )
        if after is not None and not after.get("outbox") and "outbox_due_at" in after:
            self._locked(
                self._users.update_one,
                {"_id": user_id, "outbox": {"$size": 0}, "outbox_due_at": {"$exists": True}},
                {"$unset": {"outbox_due_at": ""}},
            )

    def claim_due_outbox(self, now: datetime, lease_until: datetime) -> tuple[str, list[OutboxEntry]] | None:
        """Lease one user's due messages, so that another relay leaves them alone meanwhile."""
        while True:
            document = self._locked(
                self._users.find_one_and_update,
                {"outbox_due_at": {"$lte": now}},
                {"$set": {"outbox_due_at": lease_until}},
                return_document=pymongo.ReturnDocument.AFTER,
            )
            if document is None:
                return None
            entries = [entry_of(raw) for raw in document.get("outbox", [])]
            if entries:
                return document["_id"], entries
            self._locked(
                self._users.update_one,
                {"_id": document["_id"], "outbox": {"$size": 0}},
                {"$unset": {"outbox_due_at": ""}},
            )

    def postpone_outbox(self, user_id: str, until: datetime) -> None:
        self._locked(self._users.update_one, {"_id": user_id}, {"$set": {"outbox_due_at": until}})

    def pending_outbox_count(self) -> int:
        return self._users.count_documents({"outbox_due_at": {"$exists": True}})

    def overdue_outbox_count(self, now: datetime) -> int:
        """Users whose message is past its request's grace period: the relay's to publish, and not yet published."""
        return self._users.count_documents({"outbox_due_at": {"$lte": now}})
