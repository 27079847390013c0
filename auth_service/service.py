"""The auth service's use cases. The HTTP layer and the consumers call these; they talk
to MongoDB, the broker and the cooldown store only through the ports."""

from __future__ import annotations

import logging
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auth_service.domain.accounts import Status, User, normalize_email
from auth_service.domain.errors import (
    CodeExpired,
    EmailNotVerified,
    InvalidCode,
    InvalidCredentials,
    RateLimited,
    ServiceUnavailable,
    TooManyAttempts,
)
from auth_service.domain.passwords import PasswordHasher
from auth_service.domain.sessions import TokenPair
from auth_service.ports import BrokerUnavailable, Cooldowns, MessageBus, OutboxEntry, UserRepository
from auth_service.sessions import SessionService
from common.messaging import messages
from common.messaging.envelope import Outgoing

log = logging.getLogger(__name__)

# The request publishes the message itself; the relay steps in only if it has
# not succeeded by then, so the two rarely publish the same message.
OUTBOX_GRACE = timedelta(seconds=10)


@dataclass(frozen=True)
class Queues:
    account_creation: str
    confirm_email_code: str


@dataclass(frozen=True)
class Timeouts:
    publish_seconds: float
    confirm_wait_seconds: float
    resend_cooldown_seconds: int


@dataclass(frozen=True)
class Confirmation:
    verified: bool
    user: User


class AccountService:
    def __init__(
        self,
        users: UserRepository,
        bus: MessageBus,
        cooldowns: Cooldowns,
        hasher: PasswordHasher,
        sessions: SessionService,
        queues: Queues,
        timeouts: Timeouts,
        clock: Callable[[], float] = time.time,
    ):
        self._users = users
        self._bus = bus
        self._cooldowns = cooldowns
        self._hasher = hasher
        self._sessions = sessions
        self._queues = queues
        self._timeouts = timeouts
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def register(self, email: str, password: str, name: str | None, request_id: str | None = None) -> User:
        email = normalize_email(email)
        now = self._now()
        user = User(
            id=uuid.uuid4().hex,
            email=email,
            name=name,
            password_hash=self._hasher.hash(password),
            status=Status.PENDING_VERIFICATION,
            created_at=now,
        )
        entry = self._code_request(user, messages.ACCOUNT_REGISTERED, request_id)
        self._users.add(user, entry, publish_after=now + OUTBOX_GRACE)
        try:
            self._cooldowns.start(_cooldown_key(email), self._timeouts.resend_cooldown_seconds)
        except Exception:  # the code goes out regardless; only an early resend is not refused
            log.warning("could not start the resend cooldown", exc_info=True)
        self._deliver(user.id, entry)
        return user

    def resend_code(self, email: str, request_id: str | None = None) -> None:
        """Queue a fresh code. Answers alike for every address, known or not.

        While the broker link is down the request is refused with a retry hint
        before the cooldown starts, so asking again soon is not punished.
        """
        email = normalize_email(email)
        if not self._bus.connected:
            raise ServiceUnavailable()
        try:
            remaining = self._cooldowns.start(_cooldown_key(email), self._timeouts.resend_cooldown_seconds)
        except Exception:
            log.warning("cooldown store unavailable", exc_info=True)
            raise ServiceUnavailable() from None
        if remaining > 0:
            raise RateLimited("Wait before asking for another code.", retry_after=math.ceil(remaining))
        user = self._users.by_email(email)
        if user is None or user.verified:
            return
        entry = self._code_request(user, messages.VERIFICATION_CODE_REQUESTED, request_id)
        self._users.add_outbox(user.id, entry, publish_after=self._now() + OUTBOX_GRACE)
        self._deliver(user.id, entry)

    def confirm(self, email: str, code: str, request_id: str | None = None) -> Confirmation:
        """Submit a code and wait a bounded time for the worker's verdict.

        ``verified=False`` means no verdict came in time: the code stays queued
        and the account is still confirmed once the worker gets to it.
        """
        user = self._users.by_email(normalize_email(email))
        if user is None:
            raise CodeExpired()
        if user.verified:
            return Confirmation(True, user)
        submission = Outgoing(
            type=messages.EMAIL_CODE_SUBMITTED,
            body={"email": user.email, "code": code, "user_id": user.id, "submitted_at": self._clock()},
            correlation_id=uuid.uuid4().hex,
            request_id=request_id,
        )
        try:
            reply = self._bus.request(
                self._queues.confirm_email_code, submission, timeout=self._timeouts.confirm_wait_seconds
            )
        except BrokerUnavailable:
            raise ServiceUnavailable() from None
        if reply is None:
            return Confirmation(False, user)
        verdict = reply.get("verdict")
        if verdict == "verified":
            self._users.mark_verified(user.id, self._now())
            return Confirmation(True, self._users.by_id(user.id) or user)
        if verdict == "invalid_code":
            raise InvalidCode(attempts_left=int(reply.get("attempts_left", 0)))
        if verdict == "too_many_attempts":
            raise TooManyAttempts()
        if verdict == "code_expired":
            # A redelivered submission may have verified the account already.
            current = self._users.by_id(user.id)
            if current is not None and current.verified:
                return Confirmation(True, current)
            raise CodeExpired()
        log.error("unknown verdict from the worker", extra={"verdict": str(verdict)[:40]})
        raise ServiceUnavailable()

    def mark_verified(self, user_id: str) -> bool:
        return self._users.mark_verified(user_id, self._now())

    def login(self, email: str, password: str) -> TokenPair:
        user = self._users.by_email(normalize_email(email))
        if user is None:
            self._hasher.burn_time(password)
            raise InvalidCredentials()
        if not self._hasher.verify(password, user.password_hash):
            raise InvalidCredentials()
        if not user.verified:
            raise EmailNotVerified()
        if self._hasher.needs_rehash(user.password_hash):
            self._users.replace_password_hash(user.id, self._hasher.hash(password))
        return self._sessions.open(user)

    def relay_due_outbox(self, lease_seconds: float = 30.0) -> int:
        """Publish messages whose request did not manage to; returns how many went out.

        Raises ``BrokerUnavailable`` when the broker refuses, after putting the
        claimed messages back for a later round."""
        delivered = 0
        while True:
            now = self._now()
            claimed = self._users.claim_due_outbox(now, lease_until=now + timedelta(seconds=lease_seconds))
            if claimed is None:
                return delivered
            user_id, entries = claimed
            for entry in entries:
                if not self._deliver(user_id, entry):
                    self._users.postpone_outbox(user_id, now)
                    raise BrokerUnavailable(f"{delivered} delivered before the broker refused")
                delivered += 1

    def _code_request(self, user: User, message_type: str, request_id: str | None) -> OutboxEntry:
        message = Outgoing(
            type=message_type,
            body={"user_id": user.id, "email": user.email, "name": user.name, "requested_at": self._clock()},
            # The worker derives the code from this id (see email_service.domain.codes),
            # so it must come from the cryptographically secure generator.
            message_id=secrets.token_hex(16),
            request_id=request_id,
        )
        return OutboxEntry(self._queues.account_creation, message)

    def _deliver(self, user_id: str, entry: OutboxEntry) -> bool:
        try:
            self._bus.publish(entry.queue, entry.message, timeout=self._timeouts.publish_seconds)
        except BrokerUnavailable:
            log.warning("broker unavailable, message left in the outbox for the relay")
            return False
        self._users.outbox_delivered(user_id, entry.message.message_id)
        return True


def _cooldown_key(email: str) -> str:
    return f"resend:{email}"
