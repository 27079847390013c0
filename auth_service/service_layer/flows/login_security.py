"""Login security: the password check, failed logins in a row and the lock they set, and known devices.

``PasswordLogins.verify_password`` is the one password check of a login (by password alone, or before an
emailed second factor).

``FailedLogins`` is the one place that counts: login calls ``failed``/``succeeded``
after its password check, and so does any other password check that counts as a
login (a sign-in with a second factor). Each failure is one compare-and-set on
the account's count, so parallel wrong logins each move the count by one and
exactly one of them crosses each threshold: one warning, one lock. The events
that a threshold sets off are stored in that same write (the outbox), and a
lock also stores its end: a ``lock.due`` message with the lock's length as its
TTL, published into auth's delay queue, which the broker dead-letters into
auth's queue when the lock is over (``end_expired_lock``).
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from auth_service.domain.accounts import User, normalize_email
from auth_service.domain.activity import LOGIN_FAILED
from auth_service.domain.devices import Device
from auth_service.domain.errors import AccountDisabled, AccountPendingDeletion, EmailNotVerified, InvalidCredentials
from auth_service.domain.lockout import LockoutPolicy, Step, after_failure, is_locked
from auth_service.domain.passwords import PasswordHasher
from auth_service.ports import Accounts, Credentials, Devices, OutboxEntry
from auth_service.service_layer.activity import ActivityLog
from auth_service.service_layer.events import AccountEvents, rfc3339
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.messages import LockDue, UserLocked, UserLoginFailures, UserLoginNewDevice, UserUnlocked

log = logging.getLogger(__name__)

# Parallel failures lose a compare-and-set to each other; past this many rounds the failure is
# not counted (it is still refused): counting must never turn a wrong password into an error.
MAX_COUNT_ROUNDS = 20


class LoginStore(Accounts, Credentials, Devices, Protocol):
    """The account-document ports this uses."""


class LockEnd(enum.Enum):
    ENDED = "ended"  # this call ended it, and stored the "unlocked" event
    NOT_YET = "not_yet"  # the timer came early (clocks differ): try again later
    GONE = "gone"  # ended already (a reset), or replaced by a newer lock


class FailedLogins:
    def __init__(
        self,
        users: LoginStore,
        uow: UnitOfWork,
        events: AccountEvents,
        policy: LockoutPolicy,
        timer_queue: str,
        clock: Callable[[], float] = time.time,
        activity: ActivityLog | None = None,
    ):
        self._activity = activity
        self._users = users
        self._uow = uow
        self._events = events
        self._policy = policy
        self._timer_queue = timer_queue
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def locked(self, user: User) -> bool:
        return is_locked(user, self._now())

    def failed(self, user: User) -> None:
        """Count one failed login of ``user`` (a wrong password); warn or lock at the thresholds."""
        if self._activity is not None:
            self._activity.record(user.id, LOGIN_FAILED)
        current: User | None = user
        for _ in range(MAX_COUNT_ROUNDS):
            if current is None or self.locked(current):
                return  # a failure during a lock is refused, not counted: the lock is the answer
            failure = after_failure(current.failed_logins, self._policy)
            now = self._now()
            lock = None
            entries: list[OutboxEntry] = []
            if failure.step is Step.WARN:
                entries.append(self._events.entry(UserLoginFailures, current, failures=failure.after))
            elif failure.step is Step.LOCK:
                lock = (now + self._policy.lock_length, uuid.uuid4().hex)
                entries += [
                    self._events.entry(UserLocked, current, until=rfc3339(lock[0])),
                    self._timer(current.id, lock[1]),
                ]
            if self._uow.commit_if(
                current.id,
                entries,
                self._users.count_login_failure,
                current.id,
                failure.before,
                failure.after,
                now,
                lock,
                entries,
            ):
                if lock is not None:
                    log.warning("account locked after failed logins", extra={"user_id": current.id})
                return
            current = self._users.by_id(user.id)
        log.warning("failed login not counted: the count kept changing", extra={"user_id": user.id})

    def succeeded(self, user: User) -> None:
        """A right password outside a lock ends the streak."""
        if user.failed_logins:
            self._users.clear_login_failures(user.id)

    def end_expired_lock(self, user_id: str, lock_id: str) -> LockEnd:
        """The broker's timer for lock ``lock_id`` went off: end the lock, once, with its "unlocked" event."""
        user = self._users.by_id(user_id)
        if user is None or user.lock_id != lock_id:
            return LockEnd.GONE
        if self.locked(user):
            return LockEnd.NOT_YET
        event = self._events.entry(UserUnlocked, user, reason="expired")
        if not self._uow.commit_if(user_id, [event], self._users.end_lock, user_id, lock_id, self._now(), [event]):
            return LockEnd.GONE
        log.info("account lock ended", extra={"user_id": user_id})
        return LockEnd.ENDED

    def unlocked_by_reset(self, user: User) -> list[OutboxEntry]:
        """The event of a reset that ends ``user``'s lock (the reset's write ends it), if it is locked."""
        return [self._events.entry(UserUnlocked, user, reason="reset")] if self.locked(user) else []

    def _timer(self, user_id: str, lock_id: str) -> OutboxEntry:
        message = LockDue(user_id=user_id, lock_id=lock_id).outgoing(
            message_id=uuid.uuid4().hex, expiration_ms=self._policy.lockout_seconds * 1000
        )
        return OutboxEntry(self._timer_queue, message)


class KnownDevices:
    """The devices an account has signed in from (the most recent ones); a new one is announced."""

    def __init__(self, users: LoginStore, uow: UnitOfWork, events: AccountEvents, clock=time.time):
        self._users = users
        self._uow = uow
        self._events = events
        self._clock = clock

    def signed_in(self, user: User, device: Device) -> bool:
        """Remember the device; True if it was new to the account (and not its first login)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        event = self._events.entry(UserLoginNewDevice, user, ip=device.ip, device=device.description)
        return self._uow.commit_if(user.id, [event], self._users.remember_device, user.id, device.key, now, [event])


class PasswordLogins:
    def __init__(
        self,
        users: LoginStore,
        hasher: PasswordHasher,
        failed_logins: FailedLogins,
        clock: Callable[[], float] = time.time,
    ):
        self._users = users
        self._hasher = hasher
        self._failed_logins = failed_logins
        self._clock = clock

    def verify_password(self, email: str, password: str, device: Device | None = None) -> User:
        """The confirmed account whose password this is. A wrong password answers the same 401 after the
        same bcrypt work whatever follows a right one (tokens, or the emailed second factor); so does
        every password while the account is locked, except from a device the account has signed in
        from: a lock anyone can set must not keep the owner's own devices out. Wrong ones count toward
        the warning and the lock."""
        user = self._live_user(normalize_email(email))
        if user is None:
            self._hasher.burn_time(password)
            raise InvalidCredentials()
        proven = device is not None and user.knows(device.key)
        # Checked even during a lock, so that a locked account costs the same time as any other.
        right = self._hasher.verify(password, user.password_hash)
        if (self._failed_logins.locked(user) and not proven) or user.must_reset or user.frozen:
            # The right password too, the same answer as a wrong one: a lock, a "this wasn't me" link (the
            # thief may know the password, and their device is a proven one too: it works again only
            # after a reset), or a freeze.
            raise InvalidCredentials()
        if not right:
            if user.verified:  # an unconfirmed address is nobody's to warn yet
                self._failed_logins.failed(user)
            raise InvalidCredentials()
        if not user.verified:
            raise EmailNotVerified()
        if user.pending_deletion:
            raise AccountPendingDeletion()  # the right password only: a wrong one learns nothing of it
        if user.disabled(datetime.fromtimestamp(self._clock(), UTC)):
            raise AccountDisabled()  # the same: only the right password learns of the disable
        # Parallel wrong guesses read the account before this bcrypt ended and may have locked it since:
        # read again (only after a right password, so a wrong one's timing does not change).
        fresh = self._users.by_id(user.id)
        if fresh is None or (self._failed_logins.locked(fresh) and not proven):
            raise InvalidCredentials()
        self._failed_logins.succeeded(user)
        if self._hasher.needs_rehash(user.password_hash):
            self._users.replace_password_hash(user.id, self._hasher.hash(password))
        return user

    def knows_device(self, email: str, device: Device) -> bool:
        """Has the address's account signed in from this device? (The limits let such a device through.)"""
        user = self._live_user(normalize_email(email))
        return user is not None and user.knows(device.key)

    def _live_user(self, email: str) -> User | None:
        """The account of an address; a pending one past its lifetime counts as none (the TTL
        monitor deletes it within a minute, mongomock never does)."""
        user = self._users.by_email(email)
        return None if user is None or user.expired(datetime.fromtimestamp(self._clock(), UTC)) else user
