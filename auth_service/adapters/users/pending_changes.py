"""What a code will apply once verified, stored under its submission (ports.PendingChanges)."""

from __future__ import annotations

from datetime import datetime

import pymongo
from pymongo.errors import DuplicateKeyError

from auth_service.adapters.users.collection import UsersCollection
from auth_service.adapters.users.documents import (
    change_document,
    change_of,
    each,
    entry_document,
    left_document,
    user_of,
)
from auth_service.domain.accounts import LeftAddress, PendingChange, Status, User
from auth_service.domain.errors import EmailTaken
from auth_service.domain.recovery import ADDRESS_HISTORY_KEPT
from auth_service.ports import OutboxEntry

# Changes stored for submissions that never got a verdict (the request timed out,
# the worker judged the code wrong while auth was away) are dropped oldest first.
PENDING_CHANGES_KEPT = 10


class MongoPendingChanges(UsersCollection):
    def add_pending_change(self, user_id: str, change: PendingChange) -> None:
        self._locked(
            self._users.update_one,
            {"_id": user_id},
            {"$push": {"pending_changes": {"$each": [change_document(change)], "$slice": -PENDING_CHANGES_KEPT}}},
        )

    def pending_change(self, user_id: str, submission_id: str) -> PendingChange | None:
        document = self._users.find_one({"_id": user_id}, {"pending_changes": 1})
        for raw in (document or {}).get("pending_changes", []):
            if raw.get("submission_id") == submission_id:
                return change_of(raw)
        return None

    def discard_pending_change(self, user_id: str, submission_id: str) -> None:
        self._locked(
            self._users.update_one, {"_id": user_id}, {"$pull": {"pending_changes": {"submission_id": submission_id}}}
        )

    def request_email_change(
        self, user_id: str, new_email: str, outbox: list[OutboxEntry], publish_after: datetime
    ) -> None:
        """Remember the address waiting for its code, with the code request and the notice to publish."""
        self._locked(
            self._users.update_one,
            {"_id": user_id},
            {
                "$set": {"pending_email": new_email, "outbox_due_at": publish_after},
                "$push": {"outbox": {"$each": [entry_document(entry) for entry in outbox]}},
            },
        )

    def apply_email_change(
        self,
        user_id: str,
        change: PendingChange,
        at: datetime,
        outbox: list[OutboxEntry],
        publish_after: datetime,
        left: LeftAddress | None = None,
    ) -> User | None:
        """Make the change's address the login, once: None if this submission's change is gone (applied already).

        An unconfirmed account holding the address gives way: the code just proved
        the mailbox is this user's. A confirmed one refuses the change (EmailTaken),
        and the change is dropped, so a redelivered message does not try again.
        """
        self._locked(
            self._users.delete_many,
            {"email": change.new_email, "status": Status.PENDING_VERIFICATION.value, "_id": {"$ne": user_id}},
        )
        pushed: dict = {"outbox": each(outbox)}
        if left is not None:
            pushed["address_history"] = {"$each": [left_document(left)], "$slice": -ADDRESS_HISTORY_KEPT}
        try:
            document = self._locked(
                self._users.find_one_and_update,
                {"_id": user_id, "pending_changes.submission_id": change.submission_id},
                {
                    "$pull": {"pending_changes": {"submission_id": change.submission_id}},
                    "$set": {"email": change.new_email, "email_changed_at": at, "outbox_due_at": publish_after},
                    "$unset": {"pending_email": ""},
                    "$push": pushed,
                    # A "this wasn't me" press that read the account before this change decides again.
                    "$inc": {"not_me_version": 1},
                },
                return_document=pymongo.ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            self.discard_pending_change(user_id, change.submission_id)
            raise EmailTaken() from None
        return user_of(document)
