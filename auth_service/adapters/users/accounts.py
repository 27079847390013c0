"""Who an account is: its address, its registration, its confirmation (ports.Accounts)."""

from __future__ import annotations

from datetime import datetime

from pymongo.errors import DuplicateKeyError

from auth_service.adapters.users.collection import UsersCollection
from auth_service.adapters.users.documents import (
    PENDING,
    each,
    entry_document,
    mutable_fields,
    stored_sequence,
    user_of,
)
from auth_service.domain.accounts import Status, User
from auth_service.domain.errors import EmailTaken
from auth_service.ports import OutboxEntry


class MongoAccounts(UsersCollection):
    def add(self, user: User, outbox: list[OutboxEntry], publish_after: datetime) -> None:
        document = {
            "_id": user.id,
            "email": user.email,
            **mutable_fields(user),
            "verified_at": None,
            "token_version": user.token_version,
            "outbox": [entry_document(entry) for entry in outbox],
            "outbox_due_at": publish_after,
        }
        try:
            self._locked(self._users.insert_one, document)
        except DuplicateKeyError:
            raise EmailTaken() from None

    def replace_pending(self, current: User, updated: User, outbox: list[OutboxEntry], publish_after: datetime) -> bool:
        if updated.id != current.id:
            return self._take_over(current, updated, outbox, publish_after)
        result = self._locked(
            self._users.update_one,
            {"_id": current.id, "status": PENDING, "code_seq": stored_sequence(current.code_seq)},
            {
                "$set": {**mutable_fields(updated), "outbox_due_at": publish_after},
                "$push": {"outbox": each(outbox)},
            },
        )
        return result.modified_count == 1

    def _take_over(self, current: User, updated: User, outbox: list[OutboxEntry], publish_after: datetime) -> bool:
        """The pending account gives way to a new one with an id of its own (MongoDB ids cannot change):
        one delete, conditional on nobody having changed it, then the insert. What its outbox still
        held is published from the new document."""
        gone = self._locked(
            self._users.find_one_and_delete,
            {"_id": current.id, "status": PENDING, "code_seq": stored_sequence(current.code_seq)},
        )
        if gone is None:
            return False
        left_over = [raw for raw in gone.get("outbox", [])]
        document = {
            "_id": updated.id,
            "email": updated.email,
            **mutable_fields(updated),
            "verified_at": None,
            "token_version": 0,
            "outbox": [*left_over, *(entry_document(entry) for entry in outbox)],
            "outbox_due_at": publish_after,
        }
        try:
            self._locked(self._users.insert_one, document)
        except DuplicateKeyError:  # registered in parallel between the two: the caller reads again
            return False
        return True

    def remove_expired(self, user_id: str, now: datetime) -> bool:
        result = self._locked(self._users.delete_one, {"_id": user_id, "status": PENDING, "expires_at": {"$lte": now}})
        return result.deleted_count == 1

    def by_email(self, email: str) -> User | None:
        return user_of(self._users.find_one({"email": email}))

    def by_id(self, user_id: str) -> User | None:
        return user_of(self._users.find_one({"_id": user_id}))

    def mark_verified(
        self,
        user_id: str,
        at: datetime,
        code_seq: int,
        confirmed_code_tag: str | None,
        outbox: list[OutboxEntry],
        publish_after: datetime,
    ) -> bool:
        result = self._locked(
            self._users.update_one,
            # $not/$gt also matches documents stored before registrations were numbered.
            {"_id": user_id, "status": PENDING, "registered_seq": {"$not": {"$gt": code_seq}}},
            {
                "$set": {
                    "status": Status.VERIFIED.value,
                    "verified_at": at,
                    "confirmed_code_tag": confirmed_code_tag,
                    "outbox_due_at": publish_after,
                },
                "$unset": {"expires_at": ""},
                "$push": {"outbox": each(outbox)},
            },
        )
        return result.modified_count == 1

    def record_first_verification(
        self, user_id: str, at: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool:
        """Note when the address was first proved (a reset proves it too), with what that announces; True
        only the first time."""
        result = self._locked(
            self._users.update_one,
            {"_id": user_id, "verified_at": None},
            {"$set": {"verified_at": at, "outbox_due_at": publish_after}, "$push": {"outbox": each(outbox)}},
        )
        return result.modified_count == 1

    def reserved_by(self, email: str, now: datetime) -> str | None:
        """The account that left ``email`` by a change it may still undo, if any: nobody else may take it."""
        document = self._users.find_one(
            {"address_history": {"$elemMatch": {"email": email, "undo_until": {"$gt": now}}}}, {"_id": 1}
        )
        return None if document is None else document["_id"]

    def evict_pending(self, email: str, user_id: str) -> int:
        """Remove an unconfirmed account of another holding ``email`` (an undo takes the address back)."""
        result = self._locked(self._users.delete_many, {"email": email, "status": PENDING, "_id": {"$ne": user_id}})
        return result.deleted_count

    def set_mfa(self, user_id: str, enabled: bool, notice: OutboxEntry, publish_after: datetime) -> bool:
        """Turn the second factor on or off with its notice, in one update; False if it already was.

        Either way every device is forgotten: turned on, each one passes the factor afresh."""
        result = self._locked(
            self._users.update_one,
            {"_id": user_id, "mfa_enabled": {"$ne": enabled}},
            {
                "$set": {"mfa_enabled": enabled, "trusted_devices": [], "outbox_due_at": publish_after},
                "$push": {"outbox": entry_document(notice)},
            },
        )
        return result.modified_count == 1

    def raw(self, user_id: str) -> dict | None:
        """The account's document as stored (the export reads every field of it)."""
        return self._users.find_one({"_id": user_id})

    def ping(self) -> None:
        self._users.database.command("ping")
