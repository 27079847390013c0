""" "This wasn't me" links and what a press writes (ports.RecoveryLinks)."""

from __future__ import annotations

from datetime import datetime

import pymongo
from pymongo.errors import DuplicateKeyError

from auth_service.adapters.users.collection import UsersCollection
from auth_service.adapters.users.documents import (
    each,
    left_document,
    not_me_document,
    not_me_of,
    user_of,
)
from auth_service.domain.accounts import NotMeLink, User
from auth_service.domain.errors import EmailTaken
from auth_service.domain.recovery import Press
from auth_service.ports import OutboxEntry

# "This wasn't me" links kept per account and address they were mailed to, the most recent ones: a flood
# of notices to one mailbox (say a thief's, after moving the address) never evicts a link mailed elsewhere,
# and the newest links of the flooded mailbox still work; the document stays bounded by the addresses.
NOT_ME_LINKS_KEPT = 20


class MongoRecoveryLinks(UsersCollection):
    def add_not_me(self, user_id: str, link: NotMeLink, now: datetime) -> None:
        """Keep a notice's link (once: a redelivered message finds it there); expired links are dropped, and
        of the links mailed to ``link.email`` the most recent ones are kept. Each write moves the links'
        version, so that a press deciding on the links as it read them never overwrites one added since."""
        document = not_me_document(link)
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
            link = not_me_of(raw)
            if link.digest == digest and not link.used and not link.void and link.expires_at > now:
                return link
        return None

    def not_me_links(self, user_id: str) -> tuple[User, tuple[NotMeLink, ...], int] | None:
        """The account, its stored links and the version a ``secure`` of them must find unchanged."""
        document = self._users.find_one({"_id": user_id})
        user = user_of(document)
        if document is None or user is None:
            return None
        links = tuple(not_me_of(raw) for raw in document.get("not_me", []))
        return user, links, document.get("not_me_version") or 0

    def secure(self, user_id: str, press: Press, outbox: list[OutboxEntry], publish_after: datetime) -> User | None:
        return self._press(user_id, press, {"must_reset": True}, outbox, publish_after)

    def restore_address(
        self, user_id: str, press: Press, email: str, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        try:
            return self._press(
                user_id,
                press,
                {"must_reset": True, "email": email, "email_changed_at": press.at},
                outbox,
                publish_after,
            )
        except DuplicateKeyError:
            raise EmailTaken() from None

    def freeze(self, user_id: str, press: Press, outbox: list[OutboxEntry], publish_after: datetime) -> User | None:
        return self._press(user_id, press, {"frozen_at": press.at}, outbox, publish_after)

    def _press(
        self, user_id: str, press: Press, outcome: dict, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        """A pressed link's whole effect, in one update, only if no other press changed the links since
        (``press.version``): the links spent or voided, every token refused, trusted devices forgotten,
        pending changes dropped, ``outcome`` set, and what it announces. None if another press came first."""
        changes: dict = {
            "$set": {
                "not_me": [not_me_document(link) for link in press.links],
                "address_history": [left_document(left) for left in press.history],
                "trusted_devices": [],
                "pending_changes": [],
                "tokens_revoked_at": press.at,
                "outbox_due_at": publish_after,
                **outcome,
                **({"mfa_enabled": True} if press.mfa_on else {}),
            },
            "$inc": {"token_version": 1, "not_me_version": 1},
            "$unset": {"pending_email": ""},
            "$push": {"outbox": each(outbox)},
        }
        version = press.version
        document = self._locked(
            self._users.find_one_and_update,
            {"_id": user_id, "not_me_version": version if version else {"$in": [0, None]}},
            changes,
            return_document=pymongo.ReturnDocument.AFTER,
        )
        return user_of(document)
