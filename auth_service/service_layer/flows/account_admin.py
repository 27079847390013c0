"""What support does to an account through the admin API: find it, look at it, disable and enable it,
unlock it, force a password reset, resend its verification code, delete it at once, lift a mail suppression.

A disable ends every session in the same breath (the token version rises, so ``/auth/me`` and
introspection refuse its tokens at the next request) and is announced by ``user.disabled``; with an
``until``, a ``disable.due`` timer goes into auth's delay queue with the time left as its TTL, as a
lock's end does, and its return enables the account (``user.enabled``, reason ``expired``). A disable
stops holding at ``until`` even if the timer is late: the account's checks read the time.
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

from auth_service.domain.accounts import Disablement, User, UserSearch
from auth_service.domain.activity import Activity
from auth_service.domain.errors import Conflict, FieldRefused, NotFound, ServiceUnavailable
from auth_service.domain.sessions import Session
from auth_service.ports import BrokerUnavailable, OutboxEntry, SupportAccounts
from auth_service.service_layer.activity import ActivityLog, current_client
from auth_service.service_layer.capabilities import SessionEnder
from auth_service.service_layer.events import AccountEvents, rfc3339
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.messages import DisableDue, UserDisabled, UserEnabled, UserUnlocked

log = logging.getLogger(__name__)

MAX_DISABLE_END = timedelta(days=365)


class AdminUsers(SupportAccounts, Protocol):
    def by_id(self, user_id: str) -> User | None: ...


class SupportSessions(SessionEnder, Protocol):
    def sessions_of(self, user_id: str) -> list[Session]: ...
    def end_session(self, user_id: str, session_id: str, reason: str) -> bool: ...


class CodeMailing(Protocol):
    def resend_code(self, email: str, request_id: str | None = None, *, by_support: bool = False) -> None: ...


class ResetMailing(Protocol):
    def forgot_password(self, email: str, request_id: str | None = None, *, by_support: bool = False) -> None: ...


class Erasure(Protocol):
    def erase_now(self, user_id: str) -> bool: ...


class Deliverability(Protocol):
    def deliverable(self, email: str) -> bool: ...
    def lift(self, email: str) -> bool: ...


@dataclass(frozen=True)
class SupportTools:
    """The other flows support's actions go through (bootstrap hands each in)."""

    sessions: SupportSessions
    verification: CodeMailing
    reset: ResetMailing
    erasure: Erasure
    mail: Deliverability


@dataclass(frozen=True)
class AccountView:
    """One account as support sees it."""

    user: User
    sessions: list[Session]
    email_deliverable: bool
    last_activity: Activity | None
    now: datetime


class DisableEnd(enum.Enum):
    ENDED = "ended"
    NOT_YET = "not_yet"  # the timer came early (clocks differ): look again later
    GONE = "gone"  # enabled already, or replaced by a newer disable


class AccountAdmin:
    def __init__(
        self,
        users: AdminUsers,
        tools: SupportTools,
        activity: ActivityLog,
        uow: UnitOfWork,
        events: AccountEvents,
        timer_queues: tuple[str, str],
        short_timer_seconds: int,
        clock: Callable[[], float] = time.time,
    ):
        self._users = users
        self._tools = tools
        self._activity = activity
        self._uow = uow
        self._events = events
        self._timer_queues = timer_queues
        self._short_timer_seconds = short_timer_seconds
        self._clock = clock
        # What an unlock clears besides the lock: the address's failed-login counters of the rate limits.
        self._forget_login_failures: Callable[[str], object] = lambda email: None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def forget_login_failures_with(self, forget: Callable[[str], object]) -> None:
        self._forget_login_failures = forget

    # --- looking ---

    def search(self, query: UserSearch) -> tuple[list[User], datetime]:
        return self._users.search(query), self._now()

    def account(self, user_id: str) -> AccountView:
        user = self._user(user_id)
        recent = self._activity.recent(user_id, limit=1)
        return AccountView(
            user=user,
            sessions=self._tools.sessions.sessions_of(user_id),
            email_deliverable=self._tools.mail.deliverable(user.email),
            last_activity=recent[0] if recent else None,
            now=self._now(),
        )

    def sessions(self, user_id: str) -> list[Session]:
        return self._tools.sessions.sessions_of(user_id)

    def _user(self, user_id: str) -> User:
        user = self._users.by_id(user_id)
        if user is None or user.expired(self._now()):
            raise NotFound("No such account.")
        return user

    # --- disabling ---

    def disable(self, user_id: str, reason: str, until: datetime | None) -> User:
        user = self._user(user_id)
        now = self._now()
        if until is not None and until <= now:
            raise Conflict("The disable's end must be in the future.")
        if until is not None and until - now > MAX_DISABLE_END:
            # As a deletion's grace: the broker holds a timer that long; longer, leave the end out.
            raise FieldRefused("until", "At most 365 days ahead; leave it out to disable until enabled.")
        client = current_client()
        disablement = Disablement(uuid.uuid4().hex, reason, now, client.actor if client else None, until)
        entries = [self._events.entry(UserDisabled, user, reason=reason, until=rfc3339(until) if until else None)]
        if until is not None:
            entries.append(self._timer(user_id, disablement.id, until - now))
        updated = self._uow.commit_if(user_id, entries, self._users.disable, user_id, disablement, entries)
        if updated is None:
            raise NotFound("No such account.")
        log.warning("account disabled by support", extra={"user_id": user_id, "until": until and rfc3339(until)})
        # Its own write: the version bump refuses every token of the account at once, and is announced.
        self._tools.sessions.revoke_all_sessions(user_id, "disabled")
        return updated

    def enable(self, user_id: str) -> User:
        user = self._user(user_id)
        event = self._events.entry(UserEnabled, user, reason="admin")
        if self._uow.commit_if(user_id, [event], self._users.enable, user_id, None, [event]):
            log.warning("account enabled by support", extra={"user_id": user_id})
        return self._user(user_id)

    def end_expired_disable(self, user_id: str, disable_id: str) -> DisableEnd:
        """The broker's timer for disable ``disable_id`` went off: enable the account, once."""
        user = self._users.by_id(user_id)
        if user is None or user.disablement is None or user.disablement.id != disable_id:
            return DisableEnd.GONE
        if user.disabled(self._now()):
            return DisableEnd.NOT_YET
        event = self._events.entry(UserEnabled, user, reason="expired")
        if not self._uow.commit_if(user_id, [event], self._users.enable, user_id, disable_id, [event]):
            return DisableEnd.GONE
        log.info("account disable ended", extra={"user_id": user_id})
        return DisableEnd.ENDED

    def _timer(self, user_id: str, disable_id: str, left) -> OutboxEntry:
        seconds = max(1, int(left.total_seconds() + 0.999))
        # A delay queue lets a message out only from its head: a timer no longer than a lock's waits in the
        # locks' queue (behind at most one lock's length), a longer one in the long queue, so that it never
        # holds a lock's end back.
        short, long = self._timer_queues
        queue = short if seconds <= self._short_timer_seconds else long
        message = DisableDue(user_id=user_id, disable_id=disable_id).outgoing(
            message_id=uuid.uuid4().hex, expiration_ms=seconds * 1000
        )
        return OutboxEntry(queue, message)

    # --- the other actions ---

    def unlock(self, user_id: str) -> User:
        user = self._user(user_id)
        event = self._events.entry(UserUnlocked, user, reason="admin")
        if self._uow.commit_if(user_id, [event], self._users.unlock, user_id, [event]):
            log.info("account unlocked by support", extra={"user_id": user_id})
        self._forget_login_failures(user.email)
        return self._user(user_id)

    def force_password_reset(self, user_id: str, request_id: str | None = None) -> None:
        """Every session ends, and a reset code goes to the address (as ``forgot`` sends it)."""
        user = self._user(user_id)
        self._tools.sessions.revoke_all_sessions(user_id, "admin_password_reset")
        # The contract's 202 is a mailed code: an ask the address made itself a moment ago must not hold it.
        self._tools.reset.forgot_password(user.email, request_id, by_support=True)

    def resend_verification(self, user_id: str, request_id: str | None = None) -> None:
        user = self._user(user_id)
        if user.verified:
            raise Conflict("The address is confirmed already.")
        self._tools.verification.resend_code(user.email, request_id, by_support=True)

    def delete(self, user_id: str) -> None:
        self._user(user_id)
        try:
            erased = self._tools.erasure.erase_now(user_id)
        except BrokerUnavailable:
            # The erasure goes on from where it stopped when support asks again.
            raise ServiceUnavailable("The erasure waits for the broker. Ask again shortly.") from None
        if not erased:
            raise NotFound("No such account.")

    def end_sessions(self, user_id: str) -> None:
        self._user(user_id)
        self._tools.sessions.revoke_all_sessions(user_id, "admin")

    def end_session(self, user_id: str, session_id: str) -> None:
        found = [session for session in self.sessions(user_id) if session.family_id == session_id]
        if not found or not self._tools.sessions.end_session(user_id, session_id, "admin"):
            raise NotFound("No such session.")

    def lift_suppression(self, email: str) -> bool:
        return self._tools.mail.lift(email)
