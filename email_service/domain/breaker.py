"""When a mail transport is rested: a pure rule, no clock of its own and no lock.

A transport that failed ``failures_to_open`` times in a row is skipped for
``cooldown_seconds``; after that one mail at a time may try it (half-open).
That trial's success closes it; its failure opens it again for a full
cooldown at once, without waiting for another run of failures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Breaker:
    failures_to_open: int
    cooldown_seconds: float
    failures: int = 0
    open_until: float | None = None
    trial: bool = False

    def is_open(self, now: float) -> bool:
        """Skipped now: inside its cooldown, or past it with a trial mail under way."""
        return self.open_until is not None and (now < self.open_until or self.trial)

    def take(self, now: float) -> bool:
        """May a mail use the transport now? Past the cooldown the first taker is the trial."""
        if self.open_until is None:
            return True
        if now < self.open_until or self.trial:
            return False
        self.trial = True
        return True

    def succeeded(self) -> bool:
        """Record an answer (it took the mail, or refused it for good); True if this closed the breaker."""
        closed = self.open_until is not None
        self.failures = 0
        self.open_until = None
        self.trial = False
        return closed

    def failed(self, now: float) -> bool:
        """Record a transient failure; True if this opened the breaker (again)."""
        self.failures += 1
        reopen = self.trial
        self.trial = False
        if reopen or self.failures >= self.failures_to_open:
            self.open_until = now + self.cooldown_seconds
            return True
        return False
