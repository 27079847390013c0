"""Auth's one client for emailed codes: ask the worker to issue one, ask it to judge one.

Every flow that proves an address with a code (registration, resend, and the
password reset, email change and sign-in flows) goes through here, so the
message shapes, the cooldown, the RPC with its 503 and "no verdict in time",
and the mapping from the worker's verdict to the contract's error exist once.
A flow adds only what a verified code means for it.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from auth_service.domain.accounts import User
from auth_service.domain.errors import (
    AuthError,
    CodeExpired,
    InvalidCode,
    RateLimited,
    ServiceUnavailable,
    TooManyAttempts,
)
from auth_service.ports import BrokerUnavailable, Cooldowns, MessageBus, OutboxEntry, ResendRequest
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.envelope import MalformedMessage
from common.messaging.messages import CodeRequested, CodeSubmitted, CodeVerdict, NoticeRequested, Purpose, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodeQueues:
    requests: str
    submissions: str


@dataclass(frozen=True)
class CodeTimings:
    verdict_wait_seconds: float
    cooldown_seconds: int


_ERRORS: dict[Verdict, Callable[[CodeVerdict], AuthError]] = {
    Verdict.INVALID_CODE: lambda verdict: InvalidCode(attempts_left=verdict.attempts_left),
    Verdict.CODE_EXPIRED: lambda verdict: CodeExpired(),
    Verdict.TOO_MANY_ATTEMPTS: lambda verdict: TooManyAttempts(),
}


def error_for(verdict: CodeVerdict) -> AuthError:
    """The contract's error for a verdict other than verified."""
    return _ERRORS[verdict.verdict](verdict)


class CodeClient:
    def __init__(
        self,
        bus: MessageBus,
        uow: UnitOfWork,
        cooldowns: Cooldowns,
        queues: CodeQueues,
        timings: CodeTimings,
        clock: Callable[[], float] = time.time,
    ):
        self._bus = bus
        self._uow = uow
        self._cooldowns = cooldowns
        self._queues = queues
        self._timings = timings
        self._clock = clock

    def request(
        self,
        purpose: Purpose,
        user_id: str,
        email: str,
        name: str | None = None,
        request_id: str | None = None,
        *,
        sequence: int | None = None,
        registered_at: float | None = None,
        message_id: str | None = None,
        locale: str | None = None,
    ) -> OutboxEntry:
        """The message asking the worker to mail a code, for the caller to store in an outbox.

        ``sequence`` orders the slot's requests (the worker keeps only the newest one's code);
        ``message_id``, if given, must come from ``secrets`` like the one drawn here; ``locale``
        is the language of the email (the account's).
        """
        message = CodeRequested(
            purpose=purpose,
            user_id=user_id,
            email=email,
            requested_at=self._clock(),
            name=name,
            sequence=sequence,
            registered_at=registered_at,
            locale=locale,
        ).outgoing(
            # The worker derives the code from this id (see email_service.domain.codes),
            # so it must come from the cryptographically secure generator.
            message_id=message_id or secrets.token_hex(16),
            request_id=request_id,
        )
        return OutboxEntry(self._queues.requests, message)

    def notice(
        self,
        template: str,
        email: str,
        context: dict[str, str],
        request_id: str | None = None,
        locale: str | None = None,
        *,
        user_id: str | None = None,
    ) -> OutboxEntry:
        """The message asking the worker to mail a notice (no code, no token), for an outbox.

        Notices share the code requests' queue: both are "mail this" for the worker. ``user_id``: the
        account a security notice is about (its "this wasn't me" link names it)."""
        message = NoticeRequested(
            template=template, email=email, context=context, locale=locale, user_id=user_id
        ).outgoing(message_id=secrets.token_hex(16), request_id=request_id)
        return OutboxEntry(self._queues.requests, message)

    def issue(self, user_id: str, entry: OutboxEntry) -> None:
        """Store a request (``request``, ``notice``) in the user's outbox and publish it; the relay
        publishes it if the broker is away."""
        self._uow.announce(user_id, [entry], then=lambda: None)

    def issue_asked(self, purpose: Purpose, user: User, asked: ResendRequest) -> None:
        """Mail the account the code its address asked for (``CodeAsks``), in its language. The stored
        ask's id (from ``secrets``) names the code request: acting on it twice mails one code."""
        entry = self.request(
            purpose,
            user.id,
            user.email,
            request_id=asked.request_id,
            message_id=asked.id,
            locale=user.locale,
        )
        self.issue(user.id, entry)

    def start_cooldown(self, purpose: Purpose, email: str) -> None:
        """Start the address's cooldown after a code went out unasked (a registration); best effort."""
        try:
            self._cooldowns.start(_cooldown_key(purpose, email), self._timings.cooldown_seconds)
        except Exception:  # the code goes out regardless; only an early request for another is not refused
            log.warning("could not start the code cooldown", exc_info=True)

    def throttle(self, purpose: Purpose, email: str, *, by_support: bool = False) -> None:
        """Admit one more code for the address, or refuse: 503 while the broker is away, 429 in the cooldown.

        The broker is checked before the cooldown starts, so asking again once it
        is back is not punished. Support's ask (``by_support``) is not held by the
        cooldown, which keeps anonymous askers from flooding a mailbox; an admin key
        is named in the audit log instead. It starts the cooldown all the same.
        """
        if not self._bus.connected:
            raise ServiceUnavailable()
        if by_support:
            self.start_cooldown(purpose, email)
            return
        try:
            remaining = self._cooldowns.start(_cooldown_key(purpose, email), self._timings.cooldown_seconds)
        except Exception:
            log.warning("cooldown store unavailable", exc_info=True)
            raise ServiceUnavailable() from None
        if remaining > 0:
            raise RateLimited("Wait before asking for another code.", retry_after=math.ceil(remaining))

    def judge(
        self,
        purpose: Purpose,
        email: str,
        *,
        code: str | None = None,
        link_token: str | None = None,
        user_id: str | None = None,
        request_id: str | None = None,
        confirmation: str | None = None,
        submission_id: str | None = None,
        proven_device: bool = False,
    ) -> CodeVerdict | None:
        """Submit a code (or a link token) and wait a bounded time for the verdict.

        ``None`` means no verdict came in time: the submission stays queued and
        the worker still judges it. 503 when the broker is away or the reply is
        unreadable. ``submission_id`` (see ``new_submission_id``) is the
        message id, which the worker's durable ``code.verified`` names;
        ``confirmation`` travels with the submission and comes back on it. ``proven_device``: submitted
        from a device the account signed in from, which the account's guess budget lets through.
        """
        submission = CodeSubmitted(
            purpose=purpose,
            email=email,
            code=code,
            link_token=link_token,
            submitted_at=self._clock(),
            user_id=user_id,
            confirmation=confirmation,
            proven_device=proven_device,
        ).outgoing(
            message_id=submission_id or new_submission_id(),
            correlation_id=uuid.uuid4().hex,
            request_id=request_id,
        )
        try:
            reply = self._bus.request(self._queues.submissions, submission, timeout=self._timings.verdict_wait_seconds)
        except BrokerUnavailable:
            raise ServiceUnavailable() from None
        if reply is None:
            return None
        try:
            return CodeVerdict.from_body(reply)
        except MalformedMessage as error:
            log.error("unreadable verdict from the worker", extra={"error": str(error)})
            raise ServiceUnavailable() from None


def new_submission_id() -> str:
    return uuid.uuid4().hex


def _cooldown_key(purpose: Purpose, email: str) -> str:
    return f"code:{purpose}:{email}"
