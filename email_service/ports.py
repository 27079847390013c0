"""The worker's small interfaces to the outside, and the failures they report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from email_service.domain.codes import Judgement, PendingCode, Presented, Slot, Verdict


class TransientMailError(Exception):
    """Worth another try later: a timeout, a refused connection, a 4xx reply."""


class PermanentMailError(Exception):
    """Retrying will not help: a 5xx reply such as an unknown mailbox."""


class PendingStore(Protocol):
    def get(self, slot: Slot) -> PendingCode | None: ...
    def replace(self, pending: PendingCode, ttl_seconds: int) -> bool:
        """Store ``pending`` over the slot's current code only if it supersedes it (a newer request,
        or the same again), atomically; False if a newer one is there."""
        ...

    def lock_slot(self, slot: Slot, holder: str, hold_seconds: float, wait_seconds: float) -> bool:
        """Take the slot's mailing lock (waiting up to ``wait_seconds``); it frees itself after
        ``hold_seconds``. True if ``holder`` has it (also when it had it already)."""
        ...

    def unlock_slot(self, slot: Slot, holder: str) -> None: ...
    def mark_mail_sent(self, slot: Slot, message_id: str) -> None: ...
    def attempt(
        self, slot: Slot, presented: Presented, attempt_id: str, max_attempts: int, submitted_at: float | None = None
    ) -> Judgement: ...
    def discard_consumed(self, slot: Slot, attempt_id: str) -> None: ...
    def reserve_code(self, slot: Slot, message_id: str, now: float, per_hour: int, per_day: int) -> bool: ...
    def notice_sent(self, message_id: str) -> bool: ...
    def record_notice_sent(self, message_id: str) -> None: ...


class Mailer(Protocol):
    def send(self, template: str, to: str, context: Mapping[str, Any]) -> None:
        """Render ``template`` (its text and HTML files) with ``context`` and mail it to ``to``."""
        ...


class VerificationEvents(Protocol):
    """What the handlers report happening, for metrics; never the address or the code."""

    def code_issued(self) -> None: ...
    def code_over_quota(self) -> None: ...
    def code_judged(self, verdict: Verdict) -> None: ...
    def email_sent(self) -> None: ...
    def email_failed(self, permanent: bool) -> None: ...
