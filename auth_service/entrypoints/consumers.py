"""Auth's side of the queues: accounts confirmed by the worker, and the outbox relay."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from auth_service.ports import BrokerUnavailable
from auth_service.service import AccountService
from common.messaging import messages
from common.messaging.connection import Backoff
from common.messaging.consumer import ChannelPublisher, Result
from common.messaging.envelope import Incoming, MalformedMessage

log = logging.getLogger(__name__)


class AccountConfirmedHandler:
    def __init__(self, accounts: AccountService):
        self._accounts = accounts

    def __call__(self, message: Incoming, publisher: ChannelPublisher) -> Result:
        if message.type != messages.ACCOUNT_CONFIRMED:
            return Result.dead_letter(f"unexpected message type {message.type!r}")
        try:
            user_id = message.string_field("user_id", max_length=64)
            sequence = message.optional_number_field("sequence")
            confirmation = message.optional_string_field("confirmation", max_length=128)
        except MalformedMessage as error:
            return Result.dead_letter(f"malformed: {error}")
        changed = self._accounts.mark_verified(user_id, sequence, confirmation)
        log.info("account confirmed", extra={"user_id": user_id, "changed": changed})
        return Result.ack()


class OutboxRelay(threading.Thread):
    """Acts on stored resend requests, and publishes what a request stored but could not
    publish (the broker was away).

    A resend request sets ``wakeup`` to start a round soon; otherwise it looks
    every ``interval_seconds``, which also picks up requests another auth
    process stored. A woken round starts ``headstart_seconds`` late, so that the
    request that woke it has answered first: a round does more work for a
    pending address than for an unknown one, and competing with the answer for
    the CPU would make its timing tell the two apart.
    """

    def __init__(
        self,
        accounts: AccountService,
        interval_seconds: float = 1.0,
        on_relayed: Callable[[int], None] = lambda delivered: None,
        wakeup: threading.Event | None = None,
        headstart_seconds: float = 0.05,
    ):
        super().__init__(name="outbox-relay", daemon=True)
        self._accounts = accounts
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
        backoff = Backoff(self._stopping, initial=self._interval)
        while not self._stopping.is_set():
            # Cleared before the round: a wake during the round is kept for the next one.
            self._woken.clear()
            try:
                resent = self._accounts.process_resend_requests()
                if resent:
                    log.info("resend requests handled", extra={"handled": resent})
                delivered = self._accounts.relay_due_outbox()
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
