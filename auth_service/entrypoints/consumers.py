"""Auth's side of the queues: codes the worker verified, and the outbox relay."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from auth_service.domain.errors import EmailTaken
from auth_service.lifecycle import AccountLifecycle
from auth_service.logins import FailedLogins, LockEnd
from auth_service.mail_suppressions import MailSuppressions
from auth_service.not_me import NotMeLinks
from auth_service.outbox import Outbox
from auth_service.ports import BrokerUnavailable
from common.messaging.connection import Backoff
from common.messaging.consumer import ChannelPublisher, Delivered, Result, Router
from common.messaging.messages import AddressSuppressed, CodeVerified, LockDue, NotMeIssued, SuppressionLifted

log = logging.getLogger(__name__)


def code_verified_router(
    lifecycle: AccountLifecycle,
    failed_logins: FailedLogins,
    not_me: NotMeLinks,
    suppressions: MailSuppressions | None = None,
) -> Router:
    """What auth consumes from ACCOUNT_CONFIRMED_QUEUE, by message type: verified codes, the ends of
    failed-login locks that its delay queue hands back when they are due, the "this wasn't me"
    links the worker mails, and the addresses the worker suppressed or an operator lifted."""

    def on_code_verified(delivery: Delivered[CodeVerified], publisher: ChannelPublisher) -> Result:
        verified = delivery.message
        try:
            changed = lifecycle.apply_verified(
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
        not_me.issued(delivery.message)
        return Result.ack()

    routes: dict = {CodeVerified: on_code_verified, LockDue: on_lock_due, NotMeIssued: on_not_me_issued}
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


class OutboxRelay(threading.Thread):
    """Acts on stored resend requests (``resends``), and publishes what a request stored but
    could not publish (the broker was away).

    A resend request sets ``wakeup`` to start a round soon; otherwise it looks
    every ``interval_seconds``, which also picks up requests another auth
    process stored. A woken round starts ``headstart_seconds`` late, so that the
    request that woke it has answered first: a round does more work for a
    pending address than for an unknown one, and competing with the answer for
    the CPU would make its timing tell the two apart.
    """

    def __init__(
        self,
        outbox: Outbox,
        interval_seconds: float = 1.0,
        on_relayed: Callable[[int], None] = lambda delivered: None,
        resends: Callable[[], int] = lambda: 0,
        wakeup: threading.Event | None = None,
        headstart_seconds: float = 0.05,
    ):
        super().__init__(name="outbox-relay", daemon=True)
        self._outbox = outbox
        self._resends = resends
        self._on_relayed = on_relayed
        self._interval = interval_seconds
        self._headstart = headstart_seconds
        self._stopping = threading.Event()
        self._woken = wakeup if wakeup is not None else threading.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()

    def run(self) -> None:
        backoff = Backoff(self._stopping.wait, initial=self._interval)
        while not self._stopping.is_set():
            # Cleared before the round: a wake during the round is kept for the next one.
            self._woken.clear()
            try:
                resent = self._resends()
                if resent:
                    log.info("resend requests handled", extra={"handled": resent})
                delivered = self._outbox.relay_due()
                if delivered:
                    self._on_relayed(delivered)
                    log.info("outbox relayed", extra={"delivered": delivered})
                backoff.reset()
            except BrokerUnavailable:
                backoff.wait()
                continue
            except Exception:
                log.exception("outbox relay round failed")
                backoff.wait()
                continue
            if self._woken.wait(self._interval):
                self._stopping.wait(self._headstart)
