"""The worker's use cases: issue a code for a purpose, judge a submitted code.

Each queue's ``Router`` checks a delivery's type and parses it before these
handlers run; a handler gets a typed message and the publisher of the channel
it came on, does its work through small ports (store, mailer), and returns what
should happen to the message. The consumer acks only after the handler returned.

Every purpose shares the rules (one live code per purpose and address, its
quota, its attempts); what differs is the email (the template named after the
purpose) and what a verified code sets off: every verdict is replied to the
waiting request, with the user id and address when verified, and a purpose
listed in ``_on_verified`` also publishes a durable message (a registration's
``account.confirmed``, so the account is confirmed even if the request is gone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from common.messaging.consumer import ChannelPublisher, Delivered, Result, Router
from common.messaging.messages import AccountConfirmed, CodeRequested, CodeSubmitted, CodeVerdict, Purpose
from email_service.domain.codes import (
    Judgement,
    PendingCode,
    Presented,
    Slot,
    Verdict,
    code_digest,
    code_for_request,
    describe_validity,
    link_digest,
    link_token_for_request,
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


def template_for(purpose: Purpose) -> str:
    """The email of a purpose's code: ``templates/<purpose>.txt`` and ``.html``."""
    return purpose.value


class CodeHandlers:
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
        self._on_verified: dict[Purpose, Callable[[Slot, Judgement, Delivered[CodeSubmitted], ChannelPublisher], None]]
        self._on_verified = {Purpose.VERIFY_EMAIL: self._publish_account_confirmed}
        self.code_requests = Router({CodeRequested: self.on_code_requested})
        self.code_submissions = Router({CodeSubmitted: self.on_code_submitted})

    def on_code_requested(self, delivery: Delivered[CodeRequested], publisher: ChannelPublisher) -> Result:
        request = delivery.message
        slot = Slot(request.purpose, request.email)
        current = self._store.get(slot)
        same_request = current is not None and current.message_id == delivery.message_id
        if current is not None and current.mail_sent:
            if same_request:
                log.info("code already sent for this message, redelivery ignored")
                return Result.ack()
            if current.requested_at > request.requested_at:
                log.info("a newer code is already out, older request ignored")
                return Result.ack()

        policy = self._policy
        if not self._store.reserve_code(
            slot, delivery.message_id, self._clock(), policy.max_codes_per_hour, policy.max_codes_per_day
        ):
            log.warning("code quota reached for address, no code sent", extra={"purpose": slot.purpose.value})
            self._events.code_over_quota()
            return Result.ack()

        # Same request, same code and link: if an earlier try did mail them, this mail repeats them.
        key = policy.hmac_key()
        code = code_for_request(key, delivery.message_id)
        link_token = link_token_for_request(key, delivery.message_id)
        if not same_request:
            self._store.replace(
                PendingCode(
                    slot=slot,
                    user_id=request.user_id,
                    code_digest=code_digest(key, slot, code),
                    attempts=0,
                    message_id=delivery.message_id,
                    requested_at=request.requested_at,
                    mail_sent=False,
                    link_digest=link_digest(key, slot, link_token),
                ),
                policy.ttl_seconds,
            )
        self._events.code_issued()
        context = {
            "code": code,
            "link_token": link_token,
            "validity": describe_validity(policy.ttl_seconds),
            "name": request.name,
        }
        try:
            self._mailer.send(template_for(slot.purpose), slot.email, context)
        except TransientMailError as error:
            self._events.email_failed(permanent=False)
            return Result.retry(f"smtp: {error}")
        except PermanentMailError as error:
            self._events.email_failed(permanent=True)
            return Result.dead_letter(f"smtp: {error}")
        self._events.email_sent()
        self._store.mark_mail_sent(slot, delivery.message_id)
        log.info("code sent", extra={"purpose": slot.purpose.value})
        return Result.ack()

    def on_code_submitted(self, delivery: Delivered[CodeSubmitted], publisher: ChannelPublisher) -> Result:
        submission = delivery.message
        slot = Slot(submission.purpose, submission.email)
        key = self._policy.hmac_key()
        if submission.code is not None:
            presented = Presented.code(key, slot, submission.code)
        else:
            presented = Presented.link(key, slot, submission.link_token)
        judgement = self._store.attempt(
            slot, presented, delivery.message_id, self._policy.max_attempts, submitted_at=submission.submitted_at
        )
        verified = judgement.verdict is Verdict.VERIFIED
        if verified:
            on_verified = self._on_verified.get(slot.purpose)
            if on_verified is not None:
                on_verified(slot, judgement, delivery, publisher)
            self._store.discard_consumed(slot, delivery.message_id)
        self._events.code_judged(judgement.verdict)
        log.info("code judged", extra={"verdict": judgement.verdict.value, "purpose": slot.purpose.value})
        if delivery.reply_to:
            verdict = CodeVerdict(
                verdict=judgement.verdict,
                attempts_left=judgement.attempts_left,
                purpose=slot.purpose,
                user_id=judgement.user_id if verified else None,
                email=slot.email if verified else None,
            )
            publisher.reply(
                delivery.reply_to,
                verdict.outgoing(correlation_id=delivery.correlation_id, request_id=delivery.request_id),
            )
        return Result.ack()

    def _publish_account_confirmed(
        self, slot: Slot, judgement: Judgement, delivery: Delivered[CodeSubmitted], publisher: ChannelPublisher
    ) -> None:
        publisher.publish(
            self._account_confirmed_queue,
            AccountConfirmed(user_id=judgement.user_id, email=slot.email).outgoing(
                message_id=f"confirmed-{delivery.message_id}", request_id=delivery.request_id
            ),
        )
