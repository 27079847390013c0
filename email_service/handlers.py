"""The worker's use cases: issue a code for a registration, judge a submitted code.

Each handler takes a parsed message and the publisher of the channel it came
on, does its work through small ports (store, mailer), and returns what should
happen to the message. The consumer acks only after the handler returned.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from common.messaging import messages
from common.messaging.consumer import ChannelPublisher, Result
from common.messaging.envelope import Incoming, MalformedMessage, Outgoing
from email_service.domain.codes import (
    PendingRegistration,
    Verdict,
    code_digest,
    code_for_request,
    describe_moment,
    describe_validity,
    request_sequence,
)
from email_service.ports import Mailer, PendingStore, PermanentMailError, TransientMailError, VerificationEvents

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodePolicy:
    hmac_key: Callable[[], str]
    ttl_seconds: int
    max_attempts: int
    max_codes_per_hour: int
    max_codes_per_day: int
    # The address's mailing lock: held at most this long (longer than any mail can take, so it
    # only frees itself after a worker died holding it), and waited for this long before the
    # request goes to the retry ladder.
    mail_lock_hold_seconds: float = 100.0
    mail_lock_wait_seconds: float = 11.0


class UncountedEvents:
    def code_issued(self) -> None:
        pass

    def code_over_quota(self) -> None:
        pass

    def code_judged(self, verdict: Verdict) -> None:
        pass

    def email_sent(self) -> None:
        pass

    def email_failed(self, permanent: bool) -> None:
        pass


class VerificationHandlers:
    def __init__(
        self,
        store: PendingStore,
        mailer: Mailer,
        policy: CodePolicy,
        account_confirmed_queue: str,
        clock: Callable[[], float],
        events: VerificationEvents | None = None,
    ):
        self._store = store
        self._mailer = mailer
        self._policy = policy
        self._account_confirmed_queue = account_confirmed_queue
        self._clock = clock
        self._events = events if events is not None else UncountedEvents()

    def on_code_requested(self, message: Incoming, publisher: ChannelPublisher) -> Result:
        if message.type not in messages.CODE_REQUEST_TYPES:
            return Result.dead_letter(f"unexpected message type {message.type!r}")
        try:
            user_id = message.string_field("user_id", max_length=64)
            email = message.string_field("email")
            requested_at = message.number_field("requested_at")
            sequence = request_sequence(message.optional_number_field("sequence"), requested_at)
            registered_at = message.optional_number_field("registered_at") or requested_at
        except MalformedMessage as error:
            return Result.dead_letter(f"malformed: {error}")

        # One request per address at a time, from storing its code to the SMTP server's
        # acceptance: the last mail an address receives then holds the live code.
        policy = self._policy
        holder = message.message_id
        if not self._store.lock_address(email, holder, policy.mail_lock_hold_seconds, policy.mail_lock_wait_seconds):
            return Result.retry("another code for this address is being mailed")
        try:
            return self._issue_code(message.message_id, user_id, email, requested_at, sequence, registered_at)
        finally:
            self._store.unlock_address(email, holder)

    def _issue_code(
        self, message_id: str, user_id: str, email: str, requested_at: float, sequence: int, registered_at: float
    ) -> Result:
        current = self._store.get(email)
        same_request = current is not None and current.message_id == message_id and not current.voided
        if same_request and current.mail_sent:
            log.info("code already sent for this message, redelivery ignored")
            return Result.ack()
        if current is not None and not current.superseded_by(sequence, message_id):
            log.info("a newer code request came first, older request ignored")
            return Result.ack()

        policy = self._policy
        pending = PendingRegistration(
            email=email,
            user_id=user_id,
            code_digest="",
            attempts=0,
            message_id=message_id,
            requested_at=requested_at,
            mail_sent=False,
            sequence=sequence,
        )
        if not self._store.reserve_code(
            email, message_id, self._clock(), policy.max_codes_per_hour, policy.max_codes_per_day
        ):
            # No new code, but the earlier ones are void all the same: they belong to an
            # older registration or request.
            self._store.replace(dataclasses.replace(pending, voided=True), policy.ttl_seconds)
            log.warning("code quota reached for address, no code sent")
            self._events.code_over_quota()
            return Result.ack()

        # Same request, same code: if an earlier try did mail it, this mail repeats it.
        key = policy.hmac_key()
        code = code_for_request(key, message_id)
        if not same_request:
            stored = dataclasses.replace(pending, code_digest=code_digest(key, email, code))
            if not self._store.replace(stored, policy.ttl_seconds):
                log.info("a newer code request came first, older request ignored")
                return Result.ack()
        self._events.code_issued()
        try:
            self._mailer.send_verification(
                email, code, describe_validity(policy.ttl_seconds), describe_moment(registered_at)
            )
        except TransientMailError as error:
            self._events.email_failed(permanent=False)
            return Result.retry(f"smtp: {error}")
        except PermanentMailError as error:
            self._events.email_failed(permanent=True)
            return Result.dead_letter(f"smtp: {error}")
        self._events.email_sent()
        self._store.mark_mail_sent(email, message_id)
        log.info("verification code sent")
        return Result.ack()

    def on_code_submitted(self, message: Incoming, publisher: ChannelPublisher) -> Result:
        if message.type != messages.EMAIL_CODE_SUBMITTED:
            return Result.dead_letter(f"unexpected message type {message.type!r}")
        try:
            email = message.string_field("email")
            code = message.string_field("code", max_length=32)
            submitted_at = message.optional_number_field("submitted_at")
            # Auth's keyed hash of the code, handed back with the confirmation; opaque here.
            confirmation = message.optional_string_field("confirmation", max_length=128)
        except MalformedMessage as error:
            return Result.dead_letter(f"malformed: {error}")

        presented = code_digest(self._policy.hmac_key(), email, code)
        judgement = self._store.attempt(
            email, presented, message.message_id, self._policy.max_attempts, submitted_at=submitted_at
        )
        if judgement.verdict is Verdict.VERIFIED:
            publisher.publish(
                self._account_confirmed_queue,
                Outgoing(
                    type=messages.ACCOUNT_CONFIRMED,
                    body={
                        "user_id": judgement.user_id,
                        "email": email,
                        "sequence": judgement.sequence,
                        "confirmation": confirmation,
                    },
                    message_id=f"confirmed-{message.message_id}",
                    request_id=message.request_id,
                ),
            )
            self._store.discard_consumed(email, message.message_id)
        self._events.code_judged(judgement.verdict)
        log.info("code judged", extra={"verdict": judgement.verdict.value})
        if message.reply_to:
            publisher.reply(
                message.reply_to,
                Outgoing(
                    type=messages.EMAIL_CODE_VERDICT,
                    body={
                        "verdict": judgement.verdict.value,
                        "attempts_left": judgement.attempts_left,
                        "sequence": judgement.sequence,
                    },
                    correlation_id=message.correlation_id,
                    request_id=message.request_id,
                ),
            )
        return Result.ack()
