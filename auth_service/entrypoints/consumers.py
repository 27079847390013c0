"""Auth's side of the queues: codes the worker verified, timers that came due, links the worker mailed."""

from __future__ import annotations

import logging

from auth_service.domain.errors import EmailTaken
from auth_service.ports import BrokerUnavailable
from auth_service.service_layer.code_verified import VerifiedCodes
from auth_service.service_layer.flows.deletion import DELETION_SCHEDULED, AccountDeletion, DeletionEnd
from auth_service.service_layer.flows.login_security import FailedLogins, LockEnd
from auth_service.service_layer.flows.mail_suppressions import MailSuppressions
from auth_service.service_layer.flows.not_me import NotMeLinks
from common.messaging.consumer import ChannelPublisher, Delivered, Result, Router
from common.messaging.messages import (
    AddressSuppressed,
    CodeVerified,
    DeletionDue,
    LockDue,
    NotMeIssued,
    SuppressionLifted,
)

log = logging.getLogger(__name__)


def code_verified_router(
    verified_codes: VerifiedCodes,
    failed_logins: FailedLogins,
    not_me: NotMeLinks,
    suppressions: MailSuppressions | None = None,
    deletion: AccountDeletion | None = None,
) -> Router:
    """What auth consumes from ACCOUNT_CONFIRMED_QUEUE, by message type: verified codes, the ends of
    failed-login locks and of deletions' grace that its delay queues hand back when they are due, the
    "this wasn't me" and restore links the worker mails, and the addresses the worker suppressed or an
    operator lifted."""

    def on_code_verified(delivery: Delivered[CodeVerified], publisher: ChannelPublisher) -> Result:
        verified = delivery.message
        try:
            changed = verified_codes.apply_verified(
                verified.purpose,
                verified.user_id,
                verified.submission_id,
                verified.email,
                sequence=verified.sequence,
                confirmation=verified.confirmation,
            )
        except EmailTaken:
            # Another account confirmed the address meanwhile: the change is dropped, nothing to retry.
            log.warning("address change not applied: the address was taken", extra={"user_id": verified.user_id})
            return Result.ack()
        log.info(
            "code verified", extra={"user_id": verified.user_id, "purpose": verified.purpose.value, "changed": changed}
        )
        return Result.ack()

    def on_lock_due(delivery: Delivered[LockDue], publisher: ChannelPublisher) -> Result:
        due = delivery.message
        if failed_logins.end_expired_lock(due.user_id, due.lock_id) is LockEnd.NOT_YET:
            # The timer ran out before the lock by this process's clock: look again a little later.
            return Result.retry("lock not over yet")
        return Result.ack()

    def on_not_me_issued(delivery: Delivered[NotMeIssued], publisher: ChannelPublisher) -> Result:
        issued = delivery.message
        if issued.notice == DELETION_SCHEDULED:
            # A deletion notice's link restores the account (the message id names the notice: see
            # AccountDeletion.restore_issued); it is never a "this wasn't me" link.
            if deletion is not None:
                deletion.restore_issued(issued.user_id, issued.digest, delivery.message_id)
            return Result.ack()
        not_me.issued(issued)
        return Result.ack()

    def on_deletion_due(delivery: Delivered[DeletionDue], publisher: ChannelPublisher) -> Result:
        if deletion is None:
            return Result.dead_letter("deletion.due with no deletion wired")
        due = delivery.message
        try:
            ended = deletion.erase_due(due.user_id, due.deletion_id)
        except BrokerUnavailable:
            return Result.retry("erasure waits for the broker")
        if ended is DeletionEnd.NOT_YET:
            return Result.retry("deletion grace not over yet")
        return Result.ack()

    routes: dict = {
        CodeVerified: on_code_verified,
        LockDue: on_lock_due,
        NotMeIssued: on_not_me_issued,
        DeletionDue: on_deletion_due,
    }
    if suppressions is not None:
        mail = suppressions

        def on_address_suppressed(delivery: Delivered[AddressSuppressed], publisher: ChannelPublisher) -> Result:
            suppressed = delivery.message
            mail.recorded(suppressed.email, suppressed.reason, suppressed.source)
            return Result.ack()

        def on_suppression_lifted(delivery: Delivered[SuppressionLifted], publisher: ChannelPublisher) -> Result:
            mail.lifted(delivery.message.email)
            return Result.ack()

        routes[AddressSuppressed] = on_address_suppressed
        routes[SuppressionLifted] = on_suppression_lifted
    return Router(routes)
