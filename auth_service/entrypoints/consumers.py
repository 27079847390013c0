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
        except MalformedMessage as error:
            return Result.dead_letter(f"malformed: {error}")
        changed = self._accounts.mark_verified(user_id)
        log.info("account confirmed", extra={"user_id": user_id, "changed": changed})
        return Result.ack()


class OutboxRelay(threading.Thread):
    """Publishes what a request stored but could not publish (the broker was away)."""

    def __init__(
        self,
        accounts: AccountService,
        interval_seconds: float = 1.0,
        on_relayed: Callable[[int], None] = lambda delivered: None,
    ):
        super().__init__(name="outbox-relay", daemon=True)
        self._accounts = accounts
        self._on_relayed = on_relayed
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        backoff = Backoff(self._stopping, initial=self._interval)
        while not self._stopping.is_set():
            try:
                delivered = self._accounts.relay_due_outbox()
                if delivered:
                    self._on_relayed(delivered)
                    log.info("outbox relayed", extra={"delivered": delivered})
                backoff.reset()
                self._stopping.wait(self._interval)
            except BrokerUnavailable:
                backoff.wait()
            except Exception:
                log.exception("outbox relay round failed")
                backoff.wait()
