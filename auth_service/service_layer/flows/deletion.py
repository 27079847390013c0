"""Leaving: an account deleted by its owner, kept for a grace period in which a link restores it, then erased.

1. ``request``: the password, then a code of purpose ``delete_account`` goes to the
   address (the code machinery of every purpose: cooldown, caps, attempts).
2. ``confirm``: the code, applied once whether the request or auth's consumer of
   ``code.verified`` gets there first (``apply_verified``). One write makes the
   account ``pending_deletion`` and stores its notice (mailed with a one-time
   restore link) and its timer (``deletion.due``, published into auth's long delay
   queue with the grace as its TTL, as a lock's end is); every session ends.
3. ``restore``: the notice's link, for this deletion only, until the grace ends.
   A "this wasn't me" link that takes the address back from a thief also ends a
   deletion that the thief's address confirmed (``cancel_proved_by``).
4. ``erase_due``: the timer. Erasure is resumable: the account document is the
   anchor and goes last. Its first step stores, in the document's outbox, the
   worker's ``account.erased`` (which carries the address, to the worker only),
   the farewell notice and the public ``user.deleted`` (the id alone); then every
   outbox entry is published, then every other store is cleared, then the
   document is deleted. A redelivered timer or a process killed half-way finds
   the document and does the rest again; once it is gone, there is nothing to do.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from auth_service.domain.accounts import Deletion, PendingChange, User
from auth_service.domain.activity import DELETION_CANCELLED, DELETION_REQUESTED
from auth_service.domain.errors import InvalidCredentials
from auth_service.domain.passwords import PasswordHasher
from auth_service.ports import BrokerUnavailable, OutboxEntry
from auth_service.service_layer.activity import ActivityLog
from auth_service.service_layer.capabilities import SessionEnder
from auth_service.service_layer.code_verified import Verified, VerifiedCodes
from auth_service.service_layer.codes import CodeClient, new_submission_id
from auth_service.service_layer.events import rfc3339
from auth_service.service_layer.links import InvalidLink, LinkGone, link_owner
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.links import RESTORE_ISSUED_PREFIX
from common.messaging.messages import AccountErased, DeletionDue, Purpose, UserDeleted
from common.notices import Notice

log = logging.getLogger(__name__)

# The notice that carries the restore link (the last mail of an erased account is Notice.ACCOUNT_DELETED).
DELETION_SCHEDULED = Notice.ACCOUNT_DELETION_SCHEDULED


class DeletionEnd(enum.Enum):
    ERASED = "erased"  # this call finished the erasure
    NOT_YET = "not_yet"  # the timer came before the grace ended (clocks differ): look again later
    GONE = "gone"  # restored, deleted anew (another timer's), or erased already


@dataclass(frozen=True)
class Confirmed:
    """The end of a confirmation: ``applied`` False means no verdict in time (the code is still judged)."""

    applied: bool
    delete_after: datetime | None = None
    erased: bool = False


class DeletionUsers(Protocol):
    def by_id(self, user_id: str) -> User | None: ...
    def begin_deletion(
        self, user_id: str, submission_id: str, deletion: Deletion, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None: ...
    def add_restore_link(self, user_id: str, deletion_id: str, digest: str, expires_at: datetime) -> bool: ...
    def restore_link_live(self, user_id: str, digest: str, now: datetime) -> bool: ...
    def restore(self, user_id: str, digest: str | None, deletion_id: str | None, now: datetime) -> User | None: ...
    def begin_erasure(
        self, user_id: str, deletion_id: str, now: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool: ...
    def erasing(self, user_id: str, deletion_id: str) -> bool: ...
    def mark_for_erasure(self, user_id: str, deletion: Deletion) -> bool: ...
    def outbox_entries(self, user_id: str) -> list[OutboxEntry]: ...
    def erase(self, user_id: str) -> bool: ...


class ErasedByUser(Protocol):
    def erase(self, user_id: str) -> int: ...


class ErasedByAddress(Protocol):
    def erase(self, email: str) -> int: ...


class AccountKeys(Protocol):
    def erase(self, email: str, user_id: str) -> int: ...


@dataclass(frozen=True)
class DeletionStores:
    """What else holds an account's data, each cleared by the erasure."""

    sessions: ErasedByUser
    challenges: ErasedByUser
    asks: ErasedByAddress
    activity: ActivityLog
    keys: AccountKeys


@dataclass(frozen=True)
class DeletionPolicy:
    grace_seconds: int
    timer_queue: str  # auth's long delay queue
    worker_queue: str  # where the worker's account.erased and the notices go


class AccountDeletion:
    def __init__(
        self,
        users: DeletionUsers,
        stores: DeletionStores,
        sessions: SessionEnder,
        verified_codes: VerifiedCodes,
        codes: CodeClient,
        hasher: PasswordHasher,
        uow: UnitOfWork,
        policy: DeletionPolicy,
        clock: Callable[[], float] = time.time,
    ):
        self._users = users
        self._stores = stores
        self._sessions = sessions
        self._verified_codes = verified_codes
        verified_codes.on(Purpose.DELETE_ACCOUNT, self.apply_verified)
        self._codes = codes
        self._hasher = hasher
        self._uow = uow
        self._policy = policy
        self._grace = timedelta(seconds=policy.grace_seconds)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- asking, confirming ---

    def request(self, access_token: str | None, password: str, request_id: str | None = None) -> None:
        """The password, then a ``delete_account`` code to the account's address. Nothing changes yet."""
        user = self._sessions.authenticate(access_token)
        if not self._hasher.verify(password, user.password_hash):
            raise InvalidCredentials("The password is incorrect.")
        self._codes.throttle(Purpose.DELETE_ACCOUNT, user.email)
        entry = self._codes.request(
            Purpose.DELETE_ACCOUNT, user.id, user.email, request_id=request_id, locale=user.locale
        )
        self._codes.issue(user.id, entry)
        log.info("account deletion asked for: code mailed", extra={"user_id": user.id})

    def confirm(self, access_token: str | None, code: str, request_id: str | None = None) -> Confirmed:
        """The code: the account waits for its erasure (or, with no grace, is erased now)."""
        user = self._sessions.authenticate(access_token)
        change = PendingChange(new_submission_id(), Purpose.DELETE_ACCOUNT, self._now())
        outcome = self._verified_codes.submit(user, user.email, change, code=code, request_id=request_id)
        if not outcome.applied:
            return Confirmed(False)
        after = self._users.by_id(user.id)
        if after is None:
            return Confirmed(True, self._now(), erased=True)
        return Confirmed(True, after.deletion.delete_after if after.deletion else None)

    def apply_verified(self, verified: Verified) -> bool:
        """Apply a verified ``delete_account`` code, once (the stored change is spent in the same write)."""
        user_id, submission_id, email = verified.user_id, verified.submission_id, verified.email
        user = self._users.by_id(user_id)
        if user is None or not user.verified or user.pending_deletion:
            return False
        if email is not None and email != user.email:
            log.warning("deletion code proved an address the account no longer has, ignored")
            return False
        now = self._now()
        deletion_id = uuid.uuid4().hex
        timer = DeletionDue(user_id=user_id, deletion_id=deletion_id).outgoing(
            message_id=uuid.uuid4().hex, expiration_ms=self._policy.grace_seconds * 1000
        )
        entries = [OutboxEntry(self._policy.timer_queue, timer)]
        notice_id = ""
        if self._grace:
            notice = self._codes.notice(
                DELETION_SCHEDULED,
                user.email,
                {"delete_after": rfc3339(now + self._grace)},
                locale=user.locale,
                user_id=user_id,
            )
            notice_id = notice.message.message_id
            entries.append(notice)
        deletion = Deletion(deletion_id, user.email, now, now + self._grace, notice_id)
        updated = self._uow.commit_if(
            user_id, entries, self._users.begin_deletion, user_id, submission_id, deletion, entries
        )
        if updated is None:
            return False
        log.warning(
            "account deletion confirmed", extra={"user_id": user_id, "delete_after": rfc3339(now + self._grace)}
        )
        self._sessions.revoke_all_sessions(user_id, "account_deletion")
        self._stores.activity.record(user_id, DELETION_REQUESTED)
        if not self._grace:
            try:
                self.erase_due(user_id, deletion_id)
            except BrokerUnavailable:
                log.warning("erasure left to its timer: the broker is away", extra={"user_id": user_id})
        return True

    # --- keeping the account ---

    def restore_issued(self, user_id: str, digest: str, message_id: str) -> None:
        """Keep the digest of the restore link the worker minted for a deletion notice (idempotent). Only the
        notice of the account's current deletion counts: a late one of an earlier deletion is dropped."""
        user = self._users.by_id(user_id)
        deletion = user.deletion if user is not None else None
        if deletion is None or not deletion.notice_id or message_id != RESTORE_ISSUED_PREFIX + deletion.notice_id:
            log.info("restore link of no current deletion dropped", extra={"user_id": user_id})
            return
        self._users.add_restore_link(user_id, deletion.id, digest, deletion.delete_after)

    def check_restore(self, token: str | None) -> None:
        """Is this a live restore link, to show the button for? Reads only: mail scanners fetch links."""
        owner = link_owner(token)
        if owner is None:
            raise InvalidLink()
        if not self._users.restore_link_live(owner[0], owner[1], self._now()):
            raise LinkGone()

    def restore(self, token: str | None) -> None:
        """The restore page's button: the deletion ends and the account is as before it, its sessions
        ended. Works once, for the deletion whose notice carried it, until the grace ends."""
        owner = link_owner(token)
        if owner is None:
            raise InvalidLink()
        user_id, digest = owner
        if self._users.restore(user_id, digest, None, self._now()) is None:
            raise LinkGone()
        log.warning("account deletion undone by its restore link", extra={"user_id": user_id})
        self._stores.activity.record(user_id, DELETION_CANCELLED)

    def cancel_proved_by(self, user_id: str, address: str) -> bool:
        """A "this wasn't me" link took the account's address back from ``address``: a deletion that
        ``address`` confirmed was not the owner's, and ends."""
        user = self._users.by_id(user_id)
        if user is None or user.deletion is None or user.deletion.email != address:
            return False
        if self._users.restore(user_id, None, user.deletion.id, self._now()) is None:
            return False
        log.warning("account deletion confirmed from a taken-over address undone", extra={"user_id": user_id})
        self._stores.activity.record(user_id, DELETION_CANCELLED)
        return True

    # --- erasure ---

    def erase_now(self, user_id: str) -> bool:
        """Support deletes the account at once: a deletion whose grace is already over, then the same erasure
        as at a grace's end (its sessions ended first). False if there is no such account;
        ``BrokerUnavailable`` if the erasure's messages wait for the broker (its next try finishes it)."""
        user = self._users.by_id(user_id)
        if user is None:
            return False
        now = self._now()
        deletion = Deletion(uuid.uuid4().hex, user.email, now, now, notice_id="")
        if not self._users.mark_for_erasure(user_id, deletion):
            return False
        log.warning("account deleted by support", extra={"user_id": user_id})
        self._sessions.revoke_all_sessions(user_id, "account_deletion")
        return self.erase_due(user_id, deletion.id) is DeletionEnd.ERASED

    def erase_due(self, user_id: str, deletion_id: str) -> DeletionEnd:
        """Erase the account of deletion ``deletion_id`` once its grace is over. ``BrokerUnavailable``: its
        messages could not be published yet, and the account is left for the timer's next try."""
        user = self._users.by_id(user_id)
        deletion = user.deletion if user is not None else None
        if user is None or deletion is None or deletion.id != deletion_id:
            return DeletionEnd.GONE
        now = self._now()
        if deletion.delete_after > now and not self._users.erasing(user_id, deletion_id):
            return DeletionEnd.NOT_YET
        addresses = [user.email, *([user.pending_email] if user.pending_email else [])]
        entries = [
            *(
                OutboxEntry(
                    self._policy.worker_queue,
                    AccountErased(user_id=user_id, email=address).outgoing(message_id=uuid.uuid4().hex),
                )
                for address in addresses
            ),
            self._codes.notice(Notice.ACCOUNT_DELETED, user.email, {}, locale=user.locale),
            _deleted_event(user_id, now),
        ]
        if self._uow.store(self._users.begin_erasure, user_id, deletion_id, now, entries):
            log.warning("account erasure begun", extra={"user_id": user_id})
        elif not self._users.erasing(user_id, deletion_id):
            return DeletionEnd.GONE  # restored between the read above and this write: the restore won
        # Everything still waiting in the outbox leaves before the document that holds it goes.
        self._uow.deliver_stored(user_id)
        stores = self._stores
        stores.sessions.erase(user_id)
        stores.challenges.erase(user_id)
        for address in addresses:
            stores.asks.erase(address)
            stores.keys.erase(address, user_id)
        stores.activity.erase(user_id)
        self._users.erase(user_id)
        log.warning("account erased", extra={"user_id": user_id})
        return DeletionEnd.ERASED


def _deleted_event(user_id: str, now: datetime) -> OutboxEntry:
    event_id = uuid.uuid4().hex
    message = UserDeleted(event_id=event_id, occurred_at=rfc3339(now), user_id=user_id)
    return OutboxEntry(UserDeleted.TYPE, message.outgoing(message_id=event_id))
