"""The link thread's round: stored resend requests acted on, and what a request stored but did not publish."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from auth_service.ports import BrokerUnavailable
from auth_service.service_layer.outbox import Outbox
from common.messaging.connection import Backoff

log = logging.getLogger(__name__)


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
