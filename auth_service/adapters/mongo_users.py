"""Users in MongoDB, each document carrying its own outbox of messages to publish.

Keeping the outbox inside the user document makes "user stored" and "message
stored" one atomic single-document write, with no multi-document transaction.

A pending account carries ``expires_at``: a TTL index deletes it then (the
service also treats it as absent from that moment, since the TTL monitor runs
only once a minute). A later registration of a pending address rewrites the
document in place, compare-and-set on ``code_seq``, so that of two parallel
registrations exactly one wins each round and the other reads again.
"""

from __future__ import annotations

from datetime import datetime

import pymongo
from pymongo.errors import DuplicateKeyError

from auth_service.adapters.mongo_support import aware
from auth_service.adapters.serialized import SerializedWrites
from auth_service.domain.accounts import Deletion, LeftAddress, NotMeLink, PendingChange, Status, TrustedDevice, User
from auth_service.domain.activity import Client
from auth_service.domain.devices import KNOWN_DEVICES_KEPT
from auth_service.domain.errors import EmailTaken
from auth_service.domain.recovery import ADDRESS_HISTORY_KEPT
from auth_service.ports import OutboxEntry
from common.messaging.envelope import Outgoing
from common.messaging.messages import Purpose

# Changes stored for submissions that never got a verdict (the request timed out,
# the worker judged the code wrong while auth was away) are dropped oldest first.
PENDING_CHANGES_KEPT = 10
# Devices that passed the emailed second factor, newest last; an older one simply is asked again.
TRUSTED_DEVICES_KEPT = 20

PENDING = Status.PENDING_VERIFICATION.value
# "This wasn't me" links kept per account and address they were mailed to, the most recent ones: a flood
# of notices to one mailbox (say a thief's, after moving the address) never evicts a link mailed elsewhere,
# and the newest links of the flooded mailbox still work; the document stays bounded by the addresses.
NOT_ME_LINKS_KEPT = 20


class MongoUserRepository:
    def __init__(self, database, serialize_writes: bool = False, ttl_index: bool = True):
        self._users = database["users"]
        self._locked = SerializedWrites(serialize_writes)
        # mongomock emulates TTL indexes by deleting on reads, from whichever
        # thread reads, and two request threads can race on one deletion; the
        # service's own expiry check is enough for the in-process store.
        self._ttl_index = ttl_index

    def ensure_indexes(self) -> None:
        self._users.create_index([("email", pymongo.ASCENDING)], unique=True, name="email_unique")
        self._users.create_index([("outbox_due_at", pymongo.ASCENDING)], sparse=True, name="outbox_due")
        # Who reserves a left address (register and address change ask): a multikey index, sparse by nature.
        self._users.create_index([("address_history.email", pymongo.ASCENDING)], name="left_addresses")
        if self._ttl_index:
            # Documents without expires_at (verified accounts) are never expired.
            self._users.create_index([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0, name="pending_expiry")

    def expire_unmarked_pending(self, expires_at: datetime) -> int:
        """Give pending accounts stored before accounts expired a lifetime from now; returns how many."""
        result = self._locked(
            self._users.update_many,
            {"status": PENDING, "expires_at": {"$exists": False}},
            {"$set": {"expires_at": expires_at}},
        )
        return result.modified_count

    def add(self, user: User, outbox: list[OutboxEntry], publish_after: datetime) -> None:
        document = {
            "_id": user.id,
            "email": user.email,
            **_mutable_fields(user),
            "verified_at": None,
            "token_version": user.token_version,
            "outbox": [_entry_document(entry) for entry in outbox],
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
            {"_id": current.id, "status": PENDING, "code_seq": _stored_sequence(current.code_seq)},
            {
                "$set": {**_mutable_fields(updated), "outbox_due_at": publish_after},
                "$push": {"outbox": _each(outbox)},
            },
        )
        return result.modified_count == 1

    def _take_over(self, current: User, updated: User, outbox: list[OutboxEntry], publish_after: datetime) -> bool:
        """The pending account gives way to a new one with an id of its own (MongoDB ids cannot change):
        one delete, conditional on nobody having changed it, then the insert. What its outbox still
        held is published from the new document."""
        gone = self._locked(
            self._users.find_one_and_delete,
            {"_id": current.id, "status": PENDING, "code_seq": _stored_sequence(current.code_seq)},
        )
        if gone is None:
            return False
        left_over = [raw for raw in gone.get("outbox", [])]
        document = {
            "_id": updated.id,
            "email": updated.email,
            **_mutable_fields(updated),
            "verified_at": None,
            "token_version": 0,
            "outbox": [*left_over, *(_entry_document(entry) for entry in outbox)],
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
        return _user(self._users.find_one({"email": email}))

    def by_id(self, user_id: str) -> User | None:
        return _user(self._users.find_one({"_id": user_id}))

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
                "$push": {"outbox": _each(outbox)},
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
            {"$set": {"verified_at": at, "outbox_due_at": publish_after}, "$push": {"outbox": _each(outbox)}},
        )
        return result.modified_count == 1

    def replace_password_hash(self, user_id: str, password_hash: str) -> None:
        self._locked(self._users.update_one, {"_id": user_id}, {"$set": {"password_hash": password_hash}})

    def add_pending_change(self, user_id: str, change: PendingChange) -> None:
        self._locked(
            self._users.update_one,
            {"_id": user_id},
            {"$push": {"pending_changes": {"$each": [_change_document(change)], "$slice": -PENDING_CHANGES_KEPT}}},
        )

    def pending_change(self, user_id: str, submission_id: str) -> PendingChange | None:
        document = self._users.find_one({"_id": user_id}, {"pending_changes": 1})
        for raw in (document or {}).get("pending_changes", []):
            if raw.get("submission_id") == submission_id:
                return _change(raw)
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
                "$push": {"outbox": {"$each": [_entry_document(entry) for entry in outbox]}},
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
        pushed: dict = {"outbox": _each(outbox)}
        if left is not None:
            pushed["address_history"] = {"$each": [_left_document(left)], "$slice": -ADDRESS_HISTORY_KEPT}
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
        return _user(document)

    def bump_token_version(
        self,
        user_id: str,
        at: datetime,
        password_hash: str | None = None,
        expected_version: int | None = None,
        reset: PendingChange | None = None,
        outbox: list[OutboxEntry] | None = None,
        publish_after: datetime | None = None,
    ) -> User | None:
        """Invalidate every token issued so far, with the new password hash if one is given, in one
        update; returns the user as updated, or None if no user (at ``expected_version``) matched.

        With ``reset``, the password is the one that reset stored, and the update happens only while
        the reset is still stored (it is removed in the same update): applied once, whoever calls
        first. The same update proves the address (a pending account becomes verified) and ends a
        failed-login lock and streak. A new password (change or reset) forgets every device the
        second factor trusted. ``outbox``: what the update announces, stored with it."""
        query: dict = {"_id": user_id}
        if expected_version is not None:
            # Documents written before token versions existed count as version 0.
            query["token_version"] = {"$in": [0, None]} if expected_version == 0 else expected_version
        changes: dict = {"$inc": {"token_version": 1}, "$set": {"tokens_revoked_at": at}}
        if reset is not None:
            query["pending_changes.submission_id"] = reset.submission_id
            changes["$pull"] = {"pending_changes": {"submission_id": reset.submission_id}}
            changes["$set"]["status"] = Status.VERIFIED.value
            # A confirmed account is not deleted by the pending accounts' TTL index.
            # ... and the password is usable again after a "this wasn't me" link.
            changes["$unset"] = {"expires_at": "", "locked_until": "", "lock_id": "", "must_reset": ""}
            changes["$set"]["failed_logins"] = 0
            password_hash = reset.password_hash
        if password_hash is not None:
            # A new password also forgets every device the second factor trusted: whoever set it
            # (the owner, or a thief who took the mailbox) passes the factor afresh everywhere.
            changes["$set"] |= {"password_hash": password_hash, "password_changed_at": at, "trusted_devices": []}
        if outbox:
            changes["$push"] = {"outbox": _each(outbox)}
            changes["$set"]["outbox_due_at"] = publish_after
        document = self._locked(
            self._users.find_one_and_update, query, changes, return_document=pymongo.ReturnDocument.AFTER
        )
        return _user(document)

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
            changes["$push"] = {"outbox": _each(outbox)}
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
                "$push": {"outbox": _each(outbox)},
            },
        )
        return result.modified_count == 1

    def remember_device(
        self, user_id: str, key: str, now: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool:
        """Note a login from device ``key``; True if the account had other devices but not this one
        (``outbox`` is stored then). The most recently used devices are kept."""
        seen = {"key": key, "last_seen": now}
        keep = {"$each": [seen], "$sort": {"last_seen": 1}, "$slice": -KNOWN_DEVICES_KEPT}
        first = self._locked(
            self._users.update_one,
            {"_id": user_id, "known_devices.0": {"$exists": False}},
            {"$push": {"known_devices": keep}},
        )
        if first.modified_count == 1:
            return False  # the account's first login: nothing to compare with
        new = self._locked(
            self._users.update_one,
            {"_id": user_id, "known_devices.key": {"$ne": key}},
            {
                "$push": {"known_devices": keep, "outbox": _each(outbox)},
                "$set": {"outbox_due_at": publish_after},
            },
        )
        if new.modified_count == 1:
            return True
        self._locked(
            self._users.update_one,
            {"_id": user_id, "known_devices.key": key},
            {"$set": {"known_devices.$.last_seen": now}},
        )
        return False

    def add_not_me(self, user_id: str, link: NotMeLink, now: datetime) -> None:
        """Keep a notice's link (once: a redelivered message finds it there); expired links are dropped, and
        of the links mailed to ``link.email`` the most recent ones are kept. Each write moves the links'
        version, so that a press deciding on the links as it read them never overwrites one added since."""
        document = _not_me_document(link)
        bump = {"$inc": {"not_me_version": 1}}
        self._locked(
            self._users.update_one,
            {"_id": user_id, "not_me.expires_at": {"$lte": now}},
            {"$pull": {"not_me": {"expires_at": {"$lte": now}}}, **bump},
        )
        self._locked(
            self._users.update_one,
            {"_id": user_id, "not_me.digest": {"$ne": link.digest}},
            {"$push": {"not_me": document}, **bump},
        )
        stored = self._users.find_one({"_id": user_id}, {"not_me": 1})
        same_mailbox = [raw["digest"] for raw in (stored or {}).get("not_me", []) if raw["email"] == link.email]
        # Pulled by digest, the oldest beyond the cap as read: a parallel call never pulls a newer one.
        if len(same_mailbox) > NOT_ME_LINKS_KEPT:
            oldest = same_mailbox[:-NOT_ME_LINKS_KEPT]
            self._locked(
                self._users.update_one, {"_id": user_id}, {"$pull": {"not_me": {"digest": {"$in": oldest}}}, **bump}
            )

    def not_me(self, user_id: str, digest: str, now: datetime) -> NotMeLink | None:
        """The unused, unexpired link of that digest."""
        document = self._users.find_one({"_id": user_id}, {"not_me": 1})
        for raw in (document or {}).get("not_me", []):
            link = _not_me(raw)
            if link.digest == digest and not link.used and not link.void and link.expires_at > now:
                return link
        return None

    def not_me_links(self, user_id: str) -> tuple[User, tuple[NotMeLink, ...], int] | None:
        """The account, its stored links and the version a ``secure`` of them must find unchanged."""
        document = self._users.find_one({"_id": user_id})
        user = _user(document)
        if document is None or user is None:
            return None
        links = tuple(_not_me(raw) for raw in document.get("not_me", []))
        return user, links, document.get("not_me_version") or 0

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

    def secure(
        self,
        user_id: str,
        version: int,
        links: tuple[NotMeLink, ...],
        history: tuple[LeftAddress, ...],
        at: datetime,
        outbox: list[OutboxEntry],
        publish_after: datetime,
        *,
        email: str | None = None,
        freeze: bool = False,
        mfa_on: bool = False,
    ) -> User | None:
        """A pressed link's whole effect, in one update, only if no other press changed the links since
        (``version``): the links spent or voided, every token refused, trusted devices forgotten,
        pending changes dropped, the password unusable until a reset (or the account frozen), the
        address restored if ``email``, and what it announces. None if another press came first;
        ``EmailTaken`` if a confirmed account holds ``email``."""
        changes: dict = {
            "$set": {
                "not_me": [_not_me_document(link) for link in links],
                "address_history": [_left_document(left) for left in history],
                "trusted_devices": [],
                "pending_changes": [],
                "tokens_revoked_at": at,
                "outbox_due_at": publish_after,
            },
            "$inc": {"token_version": 1, "not_me_version": 1},
            "$unset": {"pending_email": ""},
            "$push": {"outbox": _each(outbox)},
        }
        if freeze:
            changes["$set"]["frozen_at"] = at
        else:
            changes["$set"]["must_reset"] = True
        if email is not None:
            changes["$set"] |= {"email": email, "email_changed_at": at}
        if mfa_on:
            changes["$set"]["mfa_enabled"] = True
        try:
            document = self._locked(
                self._users.find_one_and_update,
                {"_id": user_id, "not_me_version": version if version else {"$in": [0, None]}},
                changes,
                return_document=pymongo.ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise EmailTaken() from None
        return _user(document)

    def set_mfa(self, user_id: str, enabled: bool, notice: OutboxEntry, publish_after: datetime) -> bool:
        """Turn the second factor on or off with its notice, in one update; False if it already was.

        Either way every device is forgotten: turned on, each one passes the factor afresh."""
        result = self._locked(
            self._users.update_one,
            {"_id": user_id, "mfa_enabled": {"$ne": enabled}},
            {
                "$set": {"mfa_enabled": enabled, "trusted_devices": [], "outbox_due_at": publish_after},
                "$push": {"outbox": _entry_document(notice)},
            },
        )
        return result.modified_count == 1

    def trust_device(self, user_id: str, trusted: TrustedDevice) -> None:
        """Trust a device until ``trusted.until``, replacing its earlier trust; the newest few are kept."""
        self._locked(
            self._users.update_one, {"_id": user_id}, {"$pull": {"trusted_devices": {"device": trusted.device}}}
        )
        self._locked(
            self._users.update_one,
            {"_id": user_id},
            {
                "$push": {
                    "trusted_devices": {
                        "$each": [{"device": trusted.device, "until": trusted.until}],
                        "$slice": -TRUSTED_DEVICES_KEPT,
                    }
                }
            },
        )

    def forget_devices(self, user_id: str) -> None:
        """Forget every trusted device: each one passes the second factor afresh."""
        self._locked(self._users.update_one, {"_id": user_id}, {"$set": {"trusted_devices": []}})

    # --- deletion (auth_service/service_layer/flows/deletion.py) ---

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
                    "deletion": _deletion_document(deletion),
                    "restore_links": [],
                    "outbox_due_at": publish_after,
                },
                "$push": {"outbox": _each(outbox)},
            },
            return_document=pymongo.ReturnDocument.AFTER,
        )
        return _user(document)

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
        return _user(document)

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
            {"$set": {"erasing_at": now, "outbox_due_at": publish_after}, "$push": {"outbox": _each(outbox)}},
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

    def raw(self, user_id: str) -> dict | None:
        """The account's document as stored (the export reads every field of it)."""
        return self._users.find_one({"_id": user_id})

    def add_outbox(self, user_id: str, outbox: OutboxEntry, publish_after: datetime) -> None:
        self._locked(
            self._users.update_one,
            {"_id": user_id},
            {"$push": {"outbox": _entry_document(outbox)}, "$set": {"outbox_due_at": publish_after}},
        )

    def outbox_entries(self, user_id: str) -> list[OutboxEntry]:
        """The messages still waiting in the account's outbox, oldest first."""
        document = self._users.find_one({"_id": user_id}, {"outbox": 1})
        return [_entry(raw) for raw in (document or {}).get("outbox", [])]

    def outbox_delivered(self, user_id: str, message_id: str) -> None:
        self._locked(self._users.update_one, {"_id": user_id}, {"$pull": {"outbox": {"message_id": message_id}}})
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
            entries = [_entry(raw) for raw in document.get("outbox", [])]
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

    def ping(self) -> None:
        self._users.database.command("ping")


def _deletion_document(deletion: Deletion) -> dict:
    return {
        "id": deletion.id,
        "email": deletion.email,
        "requested_at": deletion.requested_at,
        "delete_after": deletion.delete_after,
        "notice_id": deletion.notice_id,
    }


def _deletion(raw: dict | None) -> Deletion | None:
    if not isinstance(raw, dict):
        return None
    return Deletion(
        id=raw["id"],
        email=raw["email"],
        requested_at=aware(raw["requested_at"]),
        delete_after=aware(raw["delete_after"]),
        notice_id=raw["notice_id"],
    )


def _mutable_fields(user: User) -> dict:
    """What a registration sets, the first one or one that takes a pending account over."""
    return {
        "name": user.name,
        "password_hash": user.password_hash,
        "status": user.status.value,
        "created_at": user.created_at,
        "registered_seq": user.registered_seq,
        "code_seq": user.code_seq,
        "expires_at": user.expires_at,
        "locale": user.locale,
    }


def _stored_sequence(code_seq: int):
    # Documents stored before code requests were numbered have no code_seq (read as 0).
    return code_seq if code_seq else {"$in": [0, None]}


def _entry_document(entry: OutboxEntry) -> dict:
    message = entry.message
    document: dict[str, object] = {
        "queue": entry.queue,
        "message_id": message.message_id,
        "type": message.type,
        "body": message.body,
        "request_id": message.request_id,
    }
    if message.expiration_ms is not None:
        document["expiration_ms"] = message.expiration_ms
    if entry.client is not None:
        document["client"] = {"ip": entry.client.ip, "device": entry.client.device}
    return document


def _each(entries: list[OutboxEntry]) -> dict:
    return {"$each": [_entry_document(entry) for entry in entries]}


def _entry(raw: dict) -> OutboxEntry:
    client = raw.get("client")
    return OutboxEntry(
        queue=raw["queue"],
        message=Outgoing(
            type=raw["type"],
            body=raw["body"],
            message_id=raw["message_id"],
            request_id=raw.get("request_id"),
            expiration_ms=raw.get("expiration_ms"),
        ),
        client=Client(client.get("ip"), client.get("device")) if isinstance(client, dict) else None,
    )


def _change_document(change: PendingChange) -> dict:
    document = {
        "submission_id": change.submission_id,
        "purpose": change.purpose.value,
        "stored_at": change.stored_at,
    }
    if change.password_hash is not None:
        document["password_hash"] = change.password_hash
    if change.new_email is not None:
        document["new_email"] = change.new_email
    return document


def _change(raw: dict) -> PendingChange:
    return PendingChange(
        submission_id=raw["submission_id"],
        purpose=Purpose(raw["purpose"]),
        stored_at=raw["stored_at"],
        password_hash=raw.get("password_hash"),
        new_email=raw.get("new_email"),
    )


def _not_me(raw: dict) -> NotMeLink:
    return NotMeLink(
        raw["digest"],
        raw["email"],
        raw["notice"],
        aware(raw["expires_at"]),
        used=bool(raw.get("used_at")) or bool(raw.get("used")),
        void=bool(raw.get("void")),
    )


def _not_me_document(link: NotMeLink) -> dict:
    document: dict = {"digest": link.digest, "email": link.email, "notice": link.notice, "expires_at": link.expires_at}
    if link.used:
        document["used"] = True
    if link.void:
        document["void"] = True
    return document


def _left_document(left: LeftAddress) -> dict:
    return {"email": left.email, "left_at": left.left_at, "undo_until": left.undo_until}


def _left(raw: dict) -> LeftAddress:
    return LeftAddress(raw["email"], aware(raw["left_at"]), aware(raw["undo_until"]))


def _user(document: dict | None) -> User | None:
    if document is None:
        return None
    return User(
        id=document["_id"],
        email=document["email"],
        name=document.get("name"),
        password_hash=document["password_hash"],
        status=Status(document["status"]),
        created_at=aware(document["created_at"]),
        registered_seq=document.get("registered_seq") or 0,
        code_seq=document.get("code_seq") or 0,
        expires_at=aware(document.get("expires_at")),
        confirmed_code_tag=document.get("confirmed_code_tag"),
        pending_email=document.get("pending_email"),
        token_version=document.get("token_version") or 0,
        locale=document.get("locale"),
        failed_logins=document.get("failed_logins") or 0,
        locked_until=aware(document.get("locked_until")),
        lock_id=document.get("lock_id"),
        mfa_enabled=bool(document.get("mfa_enabled")),
        trusted_devices=tuple(
            TrustedDevice(raw["device"], aware(raw["until"])) for raw in document.get("trusted_devices") or []
        ),
        deletion=_deletion(document.get("deletion")),
        known_devices=tuple(raw["key"] for raw in document.get("known_devices") or []),
        address_history=tuple(_left(raw) for raw in document.get("address_history") or []),
        must_reset=bool(document.get("must_reset")),
        frozen_at=aware(document.get("frozen_at")),
    )
