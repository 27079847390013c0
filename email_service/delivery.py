"""Each mail down the configured roads (MAIL_TRANSPORTS) in order, skipping those that rest.

A transient failure (a refused connection, a timeout, SMTP 4xx, HTTP 429 or
5xx, an account or quota problem) moves the mail to the next road at once; a
permanent refusal stops it there (another road would only bounce it too);
only when every road failed does the mail go back to the broker's retry
ladder. The first road that accepts the mail ends the walk, so a mail is
never handed to two of them. Each road has a breaker, shared by the
worker's threads: after ``failures_to_open`` transient failures in a row it
is skipped for ``cooldown_seconds``, then one mail tries it again. With one
road alone there is nowhere to skip to: it is always tried (resting it would
only spend the messages' rungs of the retry ladder without trying anything).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from email_service.domain.breaker import Breaker
from email_service.ports import MailTransport, OutgoingMail, PermanentMailError, RecipientRefused, TransientMailError

log = logging.getLogger(__name__)


class TransportEvents(Protocol):
    """What the roads did, for metrics: per transport, never an address."""

    def sent(self, transport: str, failed_over: bool) -> None: ...
    def failed(self, transport: str, kind: str) -> None: ...
    def breaker(self, transport: str, opened: bool) -> None: ...


class UncountedTransportEvents:
    def sent(self, transport: str, failed_over: bool) -> None:
        pass

    def failed(self, transport: str, kind: str) -> None:
        pass

    def breaker(self, transport: str, opened: bool) -> None:
        pass


class FailoverTransport:
    def __init__(
        self,
        transports: Sequence[MailTransport],
        failures_to_open: int,
        cooldown_seconds: float,
        events: TransportEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not transports:
            raise ValueError("at least one transport")
        if len(transports) == 1:
            failures_to_open = sys.maxsize
        self._routes = [(transport, Breaker(failures_to_open, cooldown_seconds)) for transport in transports]
        self._events = events if events is not None else UncountedTransportEvents()
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [transport.name for transport, _ in self._routes]

    def open_transports(self) -> set[str]:
        """The roads skipped now (their breaker is open)."""
        now = self._clock()
        with self._lock:
            return {transport.name for transport, breaker in self._routes if breaker.is_open(now)}

    def deliver(self, mail: OutgoingMail) -> None:
        failures: list[str] = []
        for index, (transport, breaker) in enumerate(self._routes):
            # A closed breaker with no failure counted is the common case: it needs neither the lock nor the
            # clock. Reading its fields without the lock is safe (each read is atomic); a change racing with
            # the read is a mail's worth of difference, as with any order of two threads.
            if breaker.open_until is not None:
                with self._lock:
                    taken = breaker.take(self._clock())
            else:
                taken = True
            if not taken:
                failures.append(f"{transport.name}: resting")
                continue
            try:
                transport.deliver(mail)
            except TransientMailError as error:
                with self._lock:
                    opened = breaker.failed(self._clock())
                self._events.failed(transport.name, "transient")
                if opened:
                    self._events.breaker(transport.name, opened=True)
                    log.warning("mail transport rested after failures", extra={"transport": transport.name})
                failures.append(f"{transport.name}: {error}")
                continue
            except PermanentMailError as error:
                # The road works: it answered, for good. Another one would refuse the mail too.
                self._answered(transport.name, breaker)
                self._events.failed(transport.name, "recipient" if isinstance(error, RecipientRefused) else "permanent")
                raise
            self._answered(transport.name, breaker)
            self._events.sent(transport.name, failed_over=index > 0)
            if index > 0:
                log.info("mail sent by a later transport", extra={"transport": transport.name, "tried": failures})
            return
        raise TransientMailError("every transport failed: " + "; ".join(failures))

    def _answered(self, name: str, breaker: Breaker) -> None:
        if breaker.failures == 0 and breaker.open_until is None:
            return
        with self._lock:
            closed = breaker.succeeded()
        if closed:
            self._events.breaker(name, opened=False)
            log.info("mail transport back in use", extra={"transport": name})

    def close(self) -> None:
        for transport, _ in self._routes:
            try:
                transport.close()
            except Exception:
                log.exception("closing a mail transport failed", extra={"transport": transport.name})
