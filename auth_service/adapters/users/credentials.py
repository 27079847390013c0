"""The password, the token version that refuses earlier tokens, failed logins and locks (ports.Credentials)."""

from __future__ import annotations

from datetime import datetime

import pymongo

from auth_service.adapters.users.collection import UsersCollection
from auth_service.adapters.users.documents import (
    each,
    user_of,
)
from auth_service.domain.accounts import PendingChange, Status, User
from auth_service.ports import OutboxEntry


class MongoCredentials(UsersCollection):
    def replace_password_hash(self, user_id: str, password_hash: str) -> None:
        self._locked(self._users.update_one, {"_id": user_id}, {"$set": {"password_hash": password_hash}})

    def change_password(
        self,
        user_id: str,
        at: datetime,
        password_hash: str,
        expected_version: int | None,
        outbox: list[OutboxEntry],
        publish_after: datetime,
    ) -> User | None:
        query: dict = {"_id": user_id}
        if expected_version is not None:
            # Documents written before token versions existed count as version 0.
            query["token_version"] = {"$in": [0, None]} if expected_version == 0 else expected_version
        return self._raise_version(query, {"$set": _new_password(password_hash, at)}, at, outbox, publish_after)

    def apply_reset(
        self, user_id: str, at: datetime, reset: PendingChange, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        # Only while the reset is stored, and it is spent in the same update: applied once, whoever calls first.
        query = {"_id": user_id, "pending_changes.submission_id": reset.submission_id}
        changes: dict = {
            "$pull": {"pending_changes": {"submission_id": reset.submission_id}},
            # A reset proves the address (a pending account becomes verified) and ends a failed-login lock
            # and streak; a confirmed account is not deleted by the pending accounts' TTL index, and the
            # password is usable again after a "this wasn't me" link.
            "$set": {"status": Status.VERIFIED.value, "failed_logins": 0, **_new_password(reset.password_hash, at)},
            "$unset": {"expires_at": "", "locked_until": "", "lock_id": "", "must_reset": ""},
        }
        return self._raise_version(query, changes, at, outbox, publish_after)

    def revoke_tokens(
        self, user_id: str, at: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        return self._raise_version({"_id": user_id}, {"$set": {}}, at, outbox, publish_after)

    def _raise_version(
        self, query: dict, changes: dict, at: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        """``changes`` with every token issued so far refused and ``outbox`` stored, in one update; the
        account as updated, or None if ``query`` matched nothing."""
        changes["$inc"] = {"token_version": 1}
        changes["$set"] |= {"tokens_revoked_at": at, "outbox_due_at": publish_after}
        changes["$push"] = {"outbox": each(outbox)}
        document = self._locked(
            self._users.find_one_and_update, query, changes, return_document=pymongo.ReturnDocument.AFTER
        )
        return user_of(document)

    def count_login_failure(
        self,
        user_id: str,
        before: int,
        after: int,
        now: datetime,
        lock: tuple[datetime, str] | None,
        outbox: list[OutboxEntry],
        publish_after: datetime,
    ) -> bool:
        """Move the failed-login count from ``before`` to ``after`` (and lock until ``lock``), only if it is
        still ``before`` and the account is not locked: of parallel failures, one moves it at a time."""
        changes: dict = {"$set": {"failed_logins": after}}
        if lock is not None:
            changes["$set"] |= {"locked_until": lock[0], "lock_id": lock[1]}
        if outbox:
            changes["$set"]["outbox_due_at"] = publish_after
            changes["$push"] = {"outbox": each(outbox)}
        result = self._locked(
            self._users.update_one,
            {
                "_id": user_id,
                "failed_logins": before if before else {"$in": [0, None]},
                "locked_until": {"$not": {"$gt": now}},
            },
            changes,
        )
        return result.modified_count == 1

    def clear_login_failures(self, user_id: str) -> None:
        self._locked(
            self._users.update_one, {"_id": user_id, "failed_logins": {"$gt": 0}}, {"$set": {"failed_logins": 0}}
        )

    def end_lock(
        self, user_id: str, lock_id: str, now: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool:
        """End lock ``lock_id`` if it is over and still the account's; True if this call ended it."""
        result = self._locked(
            self._users.update_one,
            {"_id": user_id, "lock_id": lock_id, "locked_until": {"$lte": now}},
            {
                "$unset": {"locked_until": "", "lock_id": ""},
                "$set": {"outbox_due_at": publish_after},
                "$push": {"outbox": each(outbox)},
            },
        )
        return result.modified_count == 1


def _new_password(password_hash: str | None, at: datetime) -> dict:
    # A new password also forgets every device the second factor trusted: whoever set it (the owner, or
    # a thief who took the mailbox) passes the factor afresh everywhere.
    return {"password_hash": password_hash, "password_changed_at": at, "trusted_devices": []}
