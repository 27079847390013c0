"""What support does to an account through the admin API: find it, disable and enable it, unlock it, mark it for
erasure at once (ports.SupportAccounts)."""

from __future__ import annotations

from datetime import datetime

import pymongo

from auth_service.adapters.users.collection import UsersCollection
from auth_service.adapters.users.documents import deletion_document, disablement_document, each, user_of
from auth_service.domain.accounts import DISABLED, Deletion, Disablement, Status, User, UserSearch
from auth_service.ports import OutboxEntry


class MongoSupport(UsersCollection):
    def search(self, query: UserSearch) -> list[User]:
        """A page of accounts in address order, after ``query.after``: an anchored range on an index, no skip
        (``status_email`` or ``disabled_email`` with a status, ``email_unique`` without)."""
        bounds: dict = {}
        if query.exact is not None:
            bounds["$eq"] = query.exact
        if query.prefix_range is not None:
            bounds["$gte"], bounds["$lt"] = query.prefix_range
        if query.after is not None:
            bounds["$gt"] = query.after
        condition: dict = {"email": bounds} if bounds else {}
        if query.status == DISABLED:
            condition["disabled"] = True
        elif query.status is not None:
            condition |= {"status": query.status, "disabled": {"$exists": False}}
        documents = self._users.find(condition).sort("email", pymongo.ASCENDING).limit(query.limit)
        return [user for user in map(user_of, documents) if user is not None]

    def disable(
        self, user_id: str, disablement: Disablement, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        """Disable the account (a disable already there is replaced: a new reason, a new end); the account as
        updated, or None if there is none."""
        document = self._locked(
            self._users.find_one_and_update,
            {"_id": user_id},
            {
                "$set": {
                    "disabled": True,
                    "disablement": disablement_document(disablement),
                    "outbox_due_at": publish_after,
                },
                "$push": {"outbox": each(outbox)},
            },
            return_document=pymongo.ReturnDocument.AFTER,
        )
        return user_of(document)

    def enable(self, user_id: str, disable_id: str | None, outbox: list[OutboxEntry], publish_after: datetime) -> bool:
        """End the account's disable (only disable ``disable_id``, if given); True if this call ended it."""
        query: dict = {"_id": user_id, "disabled": True}
        if disable_id is not None:
            query["disablement.id"] = disable_id
        result = self._locked(
            self._users.update_one,
            query,
            {
                "$unset": {"disabled": "", "disablement": ""},
                "$set": {"outbox_due_at": publish_after},
                "$push": {"outbox": each(outbox)},
            },
        )
        return result.modified_count == 1

    def unlock(self, user_id: str, outbox: list[OutboxEntry], publish_after: datetime) -> bool:
        """End the account's lock and failed-login streak now; True if there was a lock to end (and ``outbox``
        was stored with it). Without one, the streak alone is cleared."""
        result = self._locked(
            self._users.update_one,
            {"_id": user_id, "lock_id": {"$exists": True}},
            {
                "$unset": {"locked_until": "", "lock_id": ""},
                "$set": {"failed_logins": 0, "outbox_due_at": publish_after},
                "$push": {"outbox": each(outbox)},
            },
        )
        if result.modified_count == 1:
            return True
        self._locked(self._users.update_one, {"_id": user_id}, {"$set": {"failed_logins": 0}})
        return False

    def mark_for_erasure(self, user_id: str, deletion: Deletion) -> bool:
        """Make the account one whose grace is over now (support deletes it at once); False if there is none."""
        result = self._locked(
            self._users.update_one,
            {"_id": user_id},
            {
                "$set": {
                    "status": Status.PENDING_DELETION.value,
                    "deletion": deletion_document(deletion),
                    "restore_links": [],
                }
            },
        )
        return result.matched_count == 1
