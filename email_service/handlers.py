"""The worker's use cases: issue a code for a purpose, judge a submitted code.

Each queue's ``Router`` checks a delivery's type and parses it before these
handlers run; a handler gets a typed message and the publisher of the channel
it came on, does its work through small ports (store, mailer), and returns what
should happen to the message. The consumer acks only after the handler returned.

Every purpose shares the rules (one live code per purpose and address, its
quota, its attempts); what differs is the email (the template named after the
purpose) and what a verified code sets off: every verdict is replied to the
waiting request, with the user id and address when verified, and after that,
before the ack, a durable ``code.verified`` (any purpose) goes to auth, so what
the code proves is applied even if the request that submitted it is gone.

Notices (an address change asked for, done) are named template pairs mailed
as they are asked, once per message id. So are the notices of account events
(welcome, password changed, failed logins, lock and unlock, new sign-in): the
worker's notification queue is bound to those events on the events exchange,
and each is mailed once per ``event_id``, however often it is delivered.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.links import RESTORE_ISSUED_PREFIX, link_token_digest, link_token_reference
from common.messaging.consumer import ChannelPublisher, Delivered, Result, Router
from common.messaging.messages import (
    AccountErased,
    AccountEvent,
    AddressSuppressed,
    CodeRequested,
    CodeSubmitted,
    CodeVerdict,
    CodeVerified,
    NoticeRequested,
    NotMeIssued,
    Purpose,
    SuppressionLifted,
    UserLocked,
    UserLoginFailures,
    UserLoginNewDevice,
    UserPasswordChanged,
    UserUnlocked,
    UserVerified,
)
from common.notices import Notice
from common.tracing import client_span
from email_service.domain.codes import (
    DECOY_PURPOSES,
    GuessRules,
    PendingCode,
    Presented,
    Slot,
    Verdict,
    code_digest,
    code_for_request,
    describe_moment,
    link_digest,
    link_token_for_request,
    not_me_token_for_message,
    restore_token_for_message,
)
from email_service.domain.notices import printable_device
from email_service.ports import (
    IssueStart,
    Mailer,
    PendingStore,
    PermanentMailError,
    RecipientRefused,
    Suppressions,
    TransientMailError,
    VerificationEvents,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodePolicy:
    hmac_key: Callable[[], str]
    ttl_seconds: int
    max_attempts: int
    max_codes_per_hour: int
    max_codes_per_day: int
    # Wrong codes an account may be given in any 24 hours, over every purpose (None: no such budget).
    guesses_per_account_per_day: int | None = None
    # The slot's mailing lock: held at most this long (longer than any mail can take, so it
    # only frees itself after a worker died holding it), and waited for this long before the
    # request goes to the retry ladder.
    mail_lock_hold_seconds: float = 100.0
    mail_lock_wait_seconds: float = 11.0
    public_base_url: str = "http://localhost:8000"

    def verification_link(self, user_id: str, link_token: str) -> str:
        """The link of a verification email. Its token names the account by id, never by address,
        so that auth finds the code from the token alone; the secret part is the link token."""
        return f"{self.public_base_url.rstrip('/')}/auth/verify?token={link_token_reference(user_id, link_token)}"

    def not_me_link(self, user_id: str, token: str) -> str:
        """The "this wasn't me" link of a security notice, in the verification link's form."""
        return f"{self.public_base_url.rstrip('/')}/auth/not-me?token={link_token_reference(user_id, token)}"

    def restore_link(self, user_id: str, token: str) -> str:
        """The deletion notice's link that keeps the account, in the same form."""
        return f"{self.public_base_url.rstrip('/')}/auth/account/restore?token={link_token_reference(user_id, token)}"


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

    def code_mailed(self, seconds_since_request: float) -> None:
        pass

    def email_suppressed(self) -> None:
        pass

    def address_suppressed(self, source: str) -> None:
        pass


class NoSuppressions:
    """A list nothing is on, and that keeps nothing (handlers built without one)."""

    def is_suppressed(self, email: str) -> bool:
        return False

    def suppress(self, email: str, reason: str, source: str, now: float) -> bool:
        return True

    def lift(self, email: str) -> bool:
        return False

    def entries(self) -> dict[str, dict[str, str]]:
        return {}


# The notices auth may ask for (each a pair in templates/); they carry no code.
NOTICE_TEMPLATES = frozenset(
    {
        Notice.EMAIL_CHANGE_REQUESTED,
        Notice.EMAIL_CHANGED,
        Notice.MFA_ENABLED,
        Notice.MFA_DISABLED,
        Notice.ACCOUNT_DELETION_SCHEDULED,
        Notice.ACCOUNT_DELETED,
        # A "this wasn't me" link's undo, told to both addresses, and a freeze for support.
        Notice.EMAIL_RESTORED,
        Notice.EMAIL_CHANGE_UNDONE,
        Notice.ACCOUNT_FROZEN,
    }
)
# The notice of a confirmed deletion carries a one-time link that keeps the account, minted as the
# "this wasn't me" link is (from the message id, under the key); auth learns only its digest.
RESTORE_NOTICES = frozenset({Notice.ACCOUNT_DELETION_SCHEDULED})
# The security notices: each carries a one-time "this wasn't me" link, minted here from the message id.
SECURITY_NOTICES = frozenset(
    # email_change_undone's link contests the undo (auth tells the kinds apart by the notice's name).
    {
        Notice.NEW_SIGN_IN,
        Notice.PASSWORD_CHANGED,
        Notice.EMAIL_CHANGED,
        Notice.MFA_ENABLED,
        Notice.MFA_DISABLED,
        Notice.EMAIL_CHANGE_UNDONE,
    }
)


def _moment(rfc3339: str) -> str:
    """An event's time as the emails print it; a time the worker cannot read is printed as sent."""
    try:
        return describe_moment(datetime.fromisoformat(rfc3339).timestamp())
    except ValueError:
        return rfc3339


# The notice each mailed event sends (a pair in templates/), and what its template prints.
EVENT_NOTICES: dict[type[AccountEvent], tuple[Notice, Callable[[Any], dict[str, str]]]] = {
    UserVerified: (Notice.WELCOME, lambda event: {}),
    UserPasswordChanged: (
        Notice.PASSWORD_CHANGED,
        lambda event: {"reason": event.reason, "when": _moment(event.occurred_at)},
    ),
    UserLoginFailures: (Notice.LOGIN_FAILURES, lambda event: {"failures": str(event.failures)}),
    UserLocked: (Notice.ACCOUNT_LOCKED, lambda event: {"until": _moment(event.until)}),
    UserUnlocked: (Notice.ACCOUNT_UNLOCKED, lambda event: {"reason": event.reason}),
    UserLoginNewDevice: (
        Notice.NEW_SIGN_IN,
        lambda event: {"when": _moment(event.occurred_at), "ip": event.ip, "device": printable_device(event.device)},
    ),
}


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
        suppressions: Suppressions | None = None,
    ):
        self._suppressions = suppressions if suppressions is not None else NoSuppressions()
        self._store = store
        self._mailer = mailer
        self._policy = policy
        self._account_confirmed_queue = account_confirmed_queue
        self._clock = clock
        self._events = events if events is not None else UncountedEvents()
        self.code_requests = Router(
            {
                CodeRequested: self.on_code_requested,
                NoticeRequested: self.on_notice_requested,
                AccountErased: self.on_account_erased,
                AddressSuppressed: self.on_address_suppressed,
                SuppressionLifted: self.on_suppression_lifted,
            }
        )
        self.code_submissions = Router({CodeSubmitted: self.on_code_submitted})
        self.notifications = Router(dict.fromkeys(EVENT_NOTICES, self.on_account_event))

    def on_code_requested(self, delivery: Delivered[CodeRequested], publisher: ChannelPublisher) -> Result:
        request = delivery.message
        message_id = delivery.message_id
        slot = Slot(request.purpose, request.email)
        policy = self._policy
        # Same request, same code and link: if an earlier try did mail them, this mail repeats them.
        key = policy.hmac_key()
        code = code_for_request(key, message_id)
        link_token = link_token_for_request(key, message_id)
        pending = PendingCode(
            slot=slot,
            user_id=request.user_id,
            code_digest=code_digest(key, slot, code),
            attempts=0,
            message_id=message_id,
            requested_at=request.requested_at,
            mail_sent=False,
            link_digest=link_digest(key, slot, link_token),
            sequence=request.order,
        )
        # One request per slot at a time, from storing its code to the SMTP server's
        # acceptance: the last mail an address receives then holds the live code.
        started = self._store.start_issue(
            pending,
            holder=message_id,
            ttl_seconds=policy.ttl_seconds,
            now=self._clock(),
            per_hour=policy.max_codes_per_hour,
            per_day=policy.max_codes_per_day,
            hold_seconds=policy.mail_lock_hold_seconds,
            wait_seconds=policy.mail_lock_wait_seconds,
        )
        if started is IssueStart.LOCKED:
            return Result.retry("another code for this address is being mailed")
        if started is IssueStart.SENT:
            log.info("code already sent for this message, redelivery ignored")
            return Result.ack()
        if started is IssueStart.OUTDATED:
            log.info("a newer code request came first, older request ignored")
            return Result.ack()
        if started is IssueStart.OVER_QUOTA:
            log.warning("code quota reached for address, no code sent", extra={"purpose": slot.purpose.value})
            self._events.code_over_quota()
            return Result.ack()
        failed: Result | None = None
        sent = False
        try:
            self._events.code_issued()
            # No name: it is whatever the registrant typed, and it would be mailed to an address they chose.
            context: dict[str, Any] = {
                "code": code,
                "link_token": link_token,
                # The template words it in the email's language: duration(validity_seconds).
                "validity_seconds": policy.ttl_seconds,
                # When the registration (or request) the code is for was made: the email says so.
                "registered_at": describe_moment(request.registered_at or request.requested_at),
                "locale": request.locale,
            }
            if slot.purpose is Purpose.VERIFY_EMAIL:
                context["link"] = policy.verification_link(request.user_id, link_token)
            failed = self._send(template_for(slot.purpose), slot.email, context, publisher)
            sent = failed is None
        finally:
            # Also when the mail raised: the lock must not outlive this try by its hold time.
            self._store.finish_issue(slot, message_id, holder=message_id, sent=sent)
        if failed is not None:
            return failed
        # From auth's request (the 201, or a resend's 202) to the SMTP server's acceptance.
        self._events.code_mailed(max(0.0, self._clock() - request.requested_at))
        log.info("code sent", extra={"purpose": slot.purpose.value})
        return Result.ack()

    def on_code_submitted(self, delivery: Delivered[CodeSubmitted], publisher: ChannelPublisher) -> Result:
        submission = delivery.message
        slot = Slot(submission.purpose, submission.email)
        key = self._policy.hmac_key()
        if submission.code is not None:
            presented = Presented.code(key, slot, submission.code)
        elif submission.link_token is not None:
            presented = Presented.link(key, slot, submission.link_token)
        else:  # CodeSubmitted refuses to be built without one of them
            raise AssertionError("a submission with neither a code nor a link token")
        rules = GuessRules(
            decoys=slot.purpose in DECOY_PURPOSES,
            ttl_seconds=self._policy.ttl_seconds,
            budget=self._policy.guesses_per_account_per_day,
            proven_device=submission.proven_device,
            now=self._clock(),
        )
        judgement = self._store.attempt(
            slot, presented, delivery.message_id, self._policy.max_attempts, submission.submitted_at, rules=rules
        )
        verified = judgement.verdict is Verdict.VERIFIED
        if verified and judgement.user_id is None:  # judge_attempt copies it from the pending code it verified
            raise AssertionError("a verified code without its user")
        # The reply first: the waiting request applies a verified code itself, so the user does not
        # wait for the durable copy below (nor for the log line). A crash before the ack redelivers
        # the submission, whose remembered verdict publishes that copy then.
        if delivery.reply_to:
            verdict = CodeVerdict(
                verdict=judgement.verdict,
                attempts_left=judgement.attempts_left,
                purpose=slot.purpose,
                user_id=judgement.user_id if verified else None,
                email=slot.email if verified else None,
                sequence=judgement.sequence if verified else None,
            )
            publisher.reply(
                delivery.reply_to,
                verdict.outgoing(correlation_id=delivery.correlation_id, request_id=delivery.request_id),
            )
        self._events.code_judged(judgement.verdict)
        log.info("code judged", extra={"verdict": judgement.verdict.value, "purpose": slot.purpose.value})
        if verified and judgement.user_id is not None:
            # Durable, before the ack: applied even if the request that submitted the code is gone
            # (a 202, or a crash); whichever reaches auth first applies it, once.
            publisher.publish(
                self._account_confirmed_queue,
                CodeVerified(
                    user_id=judgement.user_id,
                    purpose=slot.purpose,
                    submission_id=delivery.message_id,
                    email=slot.email,
                    sequence=judgement.sequence,
                    confirmation=submission.confirmation,
                ).outgoing(message_id=f"verified-{delivery.message_id}", request_id=delivery.request_id),
            )
            self._store.discard_consumed(slot, delivery.message_id)
        return Result.ack()

    def on_notice_requested(self, delivery: Delivered[NoticeRequested], publisher: ChannelPublisher) -> Result:
        notice = delivery.message
        if notice.template not in NOTICE_TEMPLATES:
            # Only notices: a forged or mistaken message must not render a code's template.
            return Result.dead_letter(f"notice: unknown template {notice.template!r}")
        context = {**notice.context, "locale": notice.locale}
        if "delete_after" in notice.context:
            context["delete_after"] = _moment(notice.context["delete_after"])
        return self._send_once(delivery.message_id, notice.template, notice.email, context, publisher, notice.user_id)

    def on_account_erased(self, delivery: Delivered[AccountErased], publisher: ChannelPublisher) -> Result:
        """Forget the erased account's address: every key of its codes, quotas and locks. Deleting what is
        gone already is harmless, so a redelivery (or a worker killed half-way) just does it again."""
        erased = self._store.erase_address(delivery.message.email)
        log.info("erased account's address forgotten", extra={"user_id": delivery.message.user_id, "keys": erased})
        return Result.ack()

    def on_account_event(self, delivery: Delivered[AccountEvent], publisher: ChannelPublisher) -> Result:
        event = delivery.message
        template, context_of = EVENT_NOTICES[type(event)]
        # The mailer renders the user's language (DEFAULT_LOCALE without one).
        context: dict[str, Any] = {**context_of(event), "locale": event.locale}
        return self._send_once(event.event_id, template, event.email, context, publisher, event.user_id)

    def _send_once(
        self,
        message_id: str,
        template: str,
        email: str,
        context: dict[str, Any],
        publisher: ChannelPublisher,
        user_id: str | None,
    ) -> Result:
        """Mail a notice once per message id: a redelivered message (or a repeated event) is acked unsent."""
        if self._store.notice_sent(message_id):
            log.info("notice already sent for this message, redelivery ignored", extra={"template": template})
            return Result.ack()
        if template in SECURITY_NOTICES and user_id is not None:
            context["not_me_link"] = self._issue_not_me(message_id, template, email, user_id, publisher)
        if template in RESTORE_NOTICES and user_id is not None:
            context["restore_link"] = self._issue_restore(message_id, template, email, user_id, publisher)
        failed = self._send(template, email, context, publisher)
        if failed is not None:
            return failed
        self._store.record_notice_sent(message_id)
        log.info("notice sent", extra={"template": template})
        return Result.ack()

    def _issue_not_me(
        self, message_id: str, template: str, email: str, user_id: str, publisher: ChannelPublisher
    ) -> str:
        """The notice's "this wasn't me" link; auth learns its token's digest (durably) before the mail goes."""
        token = not_me_token_for_message(self._policy.hmac_key(), message_id)
        issued = NotMeIssued(user_id=user_id, digest=link_token_digest(token), email=email, notice=template)
        publisher.publish(self._account_confirmed_queue, issued.outgoing(message_id=f"not-me-{message_id}"))
        return self._policy.not_me_link(user_id, token)

    def _issue_restore(
        self, message_id: str, template: str, email: str, user_id: str, publisher: ChannelPublisher
    ) -> str:
        """The deletion notice's restore link; auth learns its token's digest (durably) before the mail goes."""
        token = restore_token_for_message(self._policy.hmac_key(), message_id)
        issued = NotMeIssued(user_id=user_id, digest=link_token_digest(token), email=email, notice=template)
        publisher.publish(
            self._account_confirmed_queue, issued.outgoing(message_id=f"{RESTORE_ISSUED_PREFIX}{message_id}")
        )
        return self._policy.restore_link(user_id, token)

    def on_address_suppressed(self, delivery: Delivered[AddressSuppressed], publisher: ChannelPublisher) -> Result:
        """A provider's bounce or complaint report, relayed by auth's webhook: no more mail to it."""
        suppressed = delivery.message
        if self._suppressions.suppress(suppressed.email, suppressed.reason, suppressed.source, self._clock()):
            self._events.address_suppressed(suppressed.source)
        log.warning("address suppressed", extra={"reason": suppressed.reason, "source": suppressed.source})
        return Result.ack()

    def on_suppression_lifted(self, delivery: Delivered[SuppressionLifted], publisher: ChannelPublisher) -> Result:
        """Support lifted the address (the admin API, through auth): mail goes to it again. Not echoed: auth
        dropped its own copy already."""
        if self._suppressions.lift(delivery.message.email):
            log.info("address suppression lifted by support")
        return Result.ack()

    def _send(
        self, template: str, email: str, context: Mapping[str, Any], publisher: ChannelPublisher
    ) -> Result | None:
        """Mail one email; None once it is sent, else what to do with the message (ack unsent, retry,
        dead-letter)."""
        if self._suppressions.is_suppressed(email):
            self._events.email_suppressed()
            log.info("address suppressed, nothing mailed", extra={"template": template})
            return Result.ack()
        try:
            with client_span("smtp send", **{"email.template": template}):
                self._mailer.send(template, email, context)
        except RecipientRefused as error:
            # The address is dead: no retry will help, and no later mail should try it.
            self._events.email_failed(permanent=True)
            if self._suppressions.suppress(email, "refused", error.transport, self._clock()):
                self._events.address_suppressed(error.transport)
            publisher.publish(
                self._account_confirmed_queue,
                AddressSuppressed(email=email, reason="refused", source=error.transport).outgoing(
                    message_id=f"suppressed-{uuid.uuid4().hex}"
                ),
            )
            log.warning("address refused for good and suppressed", extra={"template": template, "error": str(error)})
            return Result.ack()
        except TransientMailError as error:
            self._events.email_failed(permanent=False)
            return Result.retry(f"smtp: {error}")
        except PermanentMailError as error:
            self._events.email_failed(permanent=True)
            return Result.dead_letter(f"smtp: {error}")
        self._events.email_sent()
        return None
