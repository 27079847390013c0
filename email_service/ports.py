"""The worker's small interfaces to the outside, and the failures they report."""

from __future__ import annotations

from typing import Protocol

from email_service.domain.codes import Judgement, PendingRegistration, Verdict


class TransientMailError(Exception):
    """Worth another try later: a timeout, a refused connection, a 4xx reply."""


class PermanentMailError(Exception):
    """Retrying will not help: a 5xx reply such as an unknown mailbox."""


class PendingStore(Protocol):
    def get(self, email: str) -> PendingRegistration | None: ...
    def replace(self, pending: PendingRegistration, ttl_seconds: int) -> None: ...
    def mark_mail_sent(self, email: str, message_id: str) -> None: ...
    def attempt(
        self, email: str, presented_digest: str, attempt_id: str, max_attempts: int, submitted_at: float | None = None
    ) -> Judgement: ...
    def discard_consumed(self, email: str, attempt_id: str) -> None: ...
    def reserve_code(self, email: str, message_id: str, now: float, per_hour: int, per_day: int) -> bool: ...


class Mailer(Protocol):
    def send_verification(self, email: str, name: str | None, code: str, validity: str) -> None: ...


class VerificationEvents(Protocol):
    """What the handlers report happening, for metrics; never the address or the code."""

    def code_issued(self) -> None: ...
    def code_over_quota(self) -> None: ...
    def code_judged(self, verdict: Verdict) -> None: ...
    def email_sent(self) -> None: ...
    def email_failed(self, permanent: bool) -> None: ...
