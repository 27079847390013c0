"""Auth's side of the queues: accounts confirmed by the worker, and the outbox relay."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from auth_service.outbox import Outbox
from auth_service.ports import BrokerUnavailable
from auth_service.service import AccountService
from common.messaging.connection import Backoff
from common.messaging.consumer import ChannelPublisher, Delivered, Result, Router
from common.messaging.messages import AccountConfirmed

log = logging.getLogger(__name__)


def account_confirmed_router(accounts: AccountService) -> Router:
    """What auth consumes from ACCOUNT_CONFIRMED_QUEUE, by message type."""

    def on_account_confirmed(delivery: Delivered[AccountConfirmed], publisher: ChannelPublisher) -> Result:
        user_id = delivery.message.user_id
        changed = accounts.mark_verified(user_id)
        log.info("account confirmed", extra={"user_id": user_id, "changed": changed})
        return Result.ack()

    return Router({AccountConfirmed: on_account_confirmed})


class OutboxRelay(threading.Thread):
    """Publishes what a request stored but could not publish (the broker was away)."""

    def __init__(
        self,
        outbox: Outbox,
        interval_seconds: float = 1.0,
        on_relayed: Callable[[int], None] = lambda delivered: None,
    ):
        super().__init__(name="outbox-relay", daemon=True)
        self._outbox = outbox
        self._on_relayed = on_relayed
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        backoff = Backoff(self._stopping.wait, initial=self._interval)
        while not self._stopping.is_set():
            try:
                delivered = self._outbox.relay_due()
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
