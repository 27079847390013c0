"""The auth service's use cases. The HTTP layer and the consumers call these; they talk
to MongoDB, the broker and the cooldown store only through the ports."""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auth_service.domain.accounts import Status, User, next_sequence, normalize_email
from auth_service.domain.confirmations import ConfirmingCodes
from auth_service.domain.errors import (
    CodeExpired,
    EmailNotVerified,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidTokenError,
    RateLimited,
    ServiceUnavailable,
    TooManyAttempts,
)
from auth_service.domain.passwords import PasswordHasher
from auth_service.domain.tokens import InvalidToken, TokenIssuer
from auth_service.ports import (
    BrokerUnavailable,
    Cooldowns,
    MessageBus,
    OutboxEntry,
    ResendRequest,
    ResendRequests,
    UserRepository,
)
from common.messaging import messages
from common.messaging.envelope import Outgoing

log = logging.getLogger(__name__)

# The request publishes the message itself; the relay steps in only if it has
# not succeeded by then, so the two rarely publish the same message.
OUTBOX_GRACE = timedelta(seconds=10)
# Parallel registrations of one address each read the account and write it
# back only if nobody did in between; a loser reads again. Past this many
# rounds the caller is told to retry (503) rather than held.
MAX_WRITE_ROUNDS = 20


@dataclass(frozen=True)
class Queues:
    account_creation: str
    confirm_email_code: str


@dataclass(frozen=True)
class Timeouts:
    publish_seconds: float
    confirm_wait_seconds: float
    resend_cooldown_seconds: int
    unverified_ttl_seconds: int = 604800


@dataclass(frozen=True)
class Confirmation:
    verified: bool
    user: User


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


class AccountService:
    def __init__(
        self,
        users: UserRepository,
        resend_requests: ResendRequests,
        bus: MessageBus,
        cooldowns: Cooldowns,
        hasher: PasswordHasher,
        tokens: TokenIssuer,
        confirming_codes: ConfirmingCodes,
        queues: Queues,
        timeouts: Timeouts,
        clock: Callable[[], float] = time.time,
        resend_requested: Callable[[], None] = lambda: None,
    ):
        self._users = users
        self._resend_requests = resend_requests
        self._bus = bus
        self._cooldowns = cooldowns
        self._hasher = hasher
        self._tokens = tokens
        self._confirming_codes = confirming_codes
        self._queues = queues
        self._timeouts = timeouts
        self._clock = clock
        # Wakes whatever acts on stored resend requests (the relay thread).
        self._resend_requested = resend_requested

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def register(self, email: str, password: str, name: str | None, request_id: str | None = None) -> User:
        """Store a registration and queue its code. An address whose account is still pending
        is taken over: same account, the new password and name, a new code that voids the earlier ones."""
        email = normalize_email(email)
        password_hash = self._hasher.hash(password)
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._now()
            current = self._users.by_email(email)
            if current is not None and current.verified:
                raise EmailTaken()
            if current is not None and current.expired(now):
                self._users.remove_expired(current.id, now)
                continue
            sequence = next_sequence(current.code_seq if current else 0, now)
            registration = {
                "name": name,
                "password_hash": password_hash,
                "status": Status.PENDING_VERIFICATION,
                "created_at": now,
                "registered_seq": sequence,
                "code_seq": sequence,
                "expires_at": now + timedelta(seconds=self._timeouts.unverified_ttl_seconds),
            }
            if current is None:
                user = User(id=uuid.uuid4().hex, email=email, **registration)
                entry = self._code_request(user, messages.ACCOUNT_REGISTERED, request_id)
                try:
                    self._users.add(user, entry, publish_after=now + OUTBOX_GRACE)
                except EmailTaken:  # registered in parallel, maybe still pending: look again
                    continue
                break
            user = dataclasses.replace(current, **registration)
            entry = self._code_request(user, messages.ACCOUNT_REGISTERED, request_id)
            if self._users.replace_pending(current, user, entry, publish_after=now + OUTBOX_GRACE):
                log.info("pending registration replaced by a new one", extra={"user_id": user.id})
                break
        else:
            raise ServiceUnavailable("This address is being registered right now. Try again shortly.")
        try:
            self._cooldowns.start(_cooldown_key(email), self._timeouts.resend_cooldown_seconds)
        except Exception:  # the code goes out regardless; only an early resend is not refused
            log.warning("could not start the resend cooldown", exc_info=True)
        self._deliver(user.id, entry)
        return user

    def resend_code(self, email: str, request_id: str | None = None) -> None:
        """Ask for a fresh code. Answers alike, and after the same work, for every address.

        The request only stores what was asked; the relay thread looks the
        address up and queues a code if it has a pending account. So whether
        it has one changes neither the answer nor the work done before it.
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
        self._resend_requests.add(
            ResendRequest(id=secrets.token_hex(16), email=email, requested_at=self._now(), request_id=request_id)
        )
        self._resend_requested()

    def process_resend_requests(self, lease_seconds: float = 30.0) -> int:
        """Act on stored resend requests (the relay thread); returns how many were handled."""
        handled = 0
        while True:
            now = self._now()
            request = self._resend_requests.claim(now, lease_until=now + timedelta(seconds=lease_seconds))
            if request is None:
                return handled
            self._issue_resent_code(request)
            self._resend_requests.done(request.id)
            handled += 1

    def _issue_resent_code(self, request: ResendRequest) -> None:
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._now()
            current = self._users.by_email(request.email)
            if current is None or current.verified or current.expired(now):
                return
            user = dataclasses.replace(current, code_seq=next_sequence(current.code_seq, now))
            # The request's id, drawn from secrets, names the code request: acting on it twice
            # (a relay that died before recording it done) mails the same code, never a second one.
            entry = self._code_request(user, messages.VERIFICATION_CODE_REQUESTED, request.request_id, request.id)
            if self._users.replace_pending(current, user, entry, publish_after=now + OUTBOX_GRACE):
                self._deliver(user.id, entry)
                return
        log.warning("resend not acted on: the account kept changing", extra={"user_id": current.id})

    def confirm(self, email: str, code: str, request_id: str | None = None) -> Confirmation:
        """Submit a code and wait a bounded time for the worker's verdict.

        ``verified=False`` means no verdict came in time: the code stays queued
        and the account is still confirmed once the worker gets to it. An
        unknown address and a confirmed one answer as an expired code, except
        that the code which confirmed the address answers ``verified`` again.
        """
        user = self._live_user(normalize_email(email))
        if user is None:
            raise CodeExpired()
        if user.verified:
            return self._already_confirmed(user, code)
        tag = self._confirming_codes.tag(user.id, code)
        submission = Outgoing(
            type=messages.EMAIL_CODE_SUBMITTED,
            # The tag comes back on account.confirmed, so the account keeps it even if this request is gone.
            body={
                "email": user.email,
                "code": code,
                "user_id": user.id,
                "submitted_at": self._clock(),
                "confirmation": tag,
            },
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
            if self._users.mark_verified(user.id, self._now(), _sequence(reply.get("sequence")), tag):
                return Confirmation(True, self._users.by_id(user.id) or user)
            # Verified already (auth's consumer got there first), or the code was issued for a
            # registration that a newer one has replaced since: that code is void.
            return self._already_confirmed(self._users.by_id(user.id), code)
        if verdict == "invalid_code":
            raise InvalidCode(attempts_left=int(reply.get("attempts_left", 0)))
        if verdict == "too_many_attempts":
            raise TooManyAttempts()
        if verdict == "code_expired":
            # A redelivered submission may have verified the account already.
            return self._already_confirmed(self._users.by_id(user.id), code)
        log.error("unknown verdict from the worker", extra={"verdict": str(verdict)[:40]})
        raise ServiceUnavailable()

    def _already_confirmed(self, user: User | None, code: str) -> Confirmation:
        codes = self._confirming_codes
        if user is not None and user.verified and codes.matches(user.confirmed_code_tag, user.id, code):
            return Confirmation(True, user)
        raise CodeExpired()

    def mark_verified(self, user_id: str, code_seq: int | None, confirmation: str | None) -> bool:
        """Apply a verified code that the worker reported on ACCOUNT_CONFIRMED_QUEUE."""
        return self._users.mark_verified(user_id, self._now(), _sequence(code_seq), confirmation)

    def login(self, email: str, password: str) -> AccessToken:
        user = self._live_user(normalize_email(email))
        if user is None:
            self._hasher.burn_time(password)
            raise InvalidCredentials()
        if not self._hasher.verify(password, user.password_hash):
            raise InvalidCredentials()
        if not user.verified:
            raise EmailNotVerified()
        if self._hasher.needs_rehash(user.password_hash):
            self._users.replace_password_hash(user.id, self._hasher.hash(password))
        token, expires_in = self._tokens.issue(user.id)
        return AccessToken(token, expires_in)

    def profile(self, token: str | None) -> User:
        if not token:
            raise InvalidTokenError()
        try:
            user_id = self._tokens.subject(token)
        except InvalidToken:
            raise InvalidTokenError() from None
        user = self._users.by_id(user_id)
        if user is None:
            raise InvalidTokenError()
        return user

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

    def _live_user(self, email: str) -> User | None:
        """The account of an address; a pending one past its lifetime counts as none (the TTL
        monitor deletes it within a minute, mongomock never does)."""
        user = self._users.by_email(email)
        return None if user is None or user.expired(self._now()) else user

    def _code_request(
        self, user: User, message_type: str, request_id: str | None, message_id: str | None = None
    ) -> OutboxEntry:
        message = Outgoing(
            type=message_type,
            body={
                "user_id": user.id,
                "email": user.email,
                "name": user.name,
                "requested_at": self._clock(),
                # The worker keeps only the newest request's code, and mails one address's codes in this order.
                "sequence": user.code_seq,
                # The email says when the registration was made.
                "registered_at": user.created_at.timestamp(),
            },
            # The worker derives the code from this id (see email_service.domain.codes),
            # so it must come from the cryptographically secure generator.
            message_id=message_id or secrets.token_hex(16),
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


def _sequence(value) -> int:
    """A code's sequence number from a message; a message from before they existed carries none (0)."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
