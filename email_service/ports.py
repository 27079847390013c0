"""The worker's small interfaces to the outside, and the failures they report."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol

from email_service.domain.codes import GuessRules, Judgement, PendingCode, Presented, Slot, Verdict


class TransientMailError(Exception):
    """Worth another try later: a timeout, a refused connection, a 4xx reply."""


class PermanentMailError(Exception):
    """Retrying will not help: a 5xx reply, a provider refusing the message."""


class RecipientRefused(PermanentMailError):
    """The address itself is dead (SMTP 5.1.1, a hard bounce, Postmark's inactive recipient): no
    transport will do better, and the address goes on the suppression list."""

    def __init__(self, message: str, transport: str):
        super().__init__(message)
        self.transport = transport


class AddressSuppressed(Exception):
    """The address is on the suppression list: nothing is sent to it."""


class IssueStart(enum.Enum):
    """What starting to issue a request's code found, in one step (the store's ``start_issue``)."""

    LOCKED = "locked"  # another request of the slot is being mailed: try again later
    SENT = "sent"  # this request's mail went out already (a redelivery)
    OUTDATED = "outdated"  # a newer request of the slot came first
    OVER_QUOTA = "over_quota"  # no code; the live one is void for a registration, left live otherwise
    STORED = "stored"  # the code is stored (now or by an earlier try): mail it, the lock is held


class PendingStore(Protocol):
    def get(self, slot: Slot) -> PendingCode | None: ...
    def start_issue(
        self,
        pending: PendingCode,
        holder: str,
        *,
        ttl_seconds: int,
        now: float,
        per_hour: int,
        per_day: int,
        hold_seconds: float,
        wait_seconds: float,
    ) -> IssueStart:
        """Take the slot's mailing lock, then, unless this request's mail went out (or its code was
        spent and discarded since) or a newer request came first, count it against the quota and store
        ``pending`` (over the quota: for ``VOIDED_OVER_QUOTA`` a voided record without a code, else nothing,
        the live code left as it is): one atomic step. The lock stays held only
        for ``STORED``."""
        ...

    def finish_issue(self, slot: Slot, message_id: str, holder: str, *, sent: bool) -> None:
        """Record the mail as sent (if ``sent`` and still the slot's request) and free the lock."""
        ...

    def attempt(
        self,
        slot: Slot,
        presented: Presented,
        attempt_id: str,
        max_attempts: int,
        submitted_at: float | None = None,
        *,
        rules: GuessRules | None = None,
    ) -> Judgement: ...
    def discard_consumed(self, slot: Slot, attempt_id: str) -> None: ...
    def notice_sent(self, message_id: str) -> bool: ...
    def record_notice_sent(self, message_id: str) -> None: ...


class OutgoingMail(Protocol):
    """One rendered mail as a transport sees it: the same MIME bytes whichever road it takes."""

    @property
    def sender(self) -> str: ...
    @property
    def recipients(self) -> list[str]: ...
    @property
    def subject(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def message_id_header(self) -> str: ...


class MailTransport(Protocol):
    """One road out (SMTP, Amazon SES, Postmark). ``deliver`` returns once the road accepted the mail,
    else raises ``TransientMailError`` (another road may do better), ``RecipientRefused`` or
    ``PermanentMailError``; each maps its provider's documented answers to those."""

    name: str

    def deliver(self, mail: OutgoingMail) -> None: ...
    def close(self) -> None: ...


class Suppressions(Protocol):
    """The addresses that get no more mail (hard bounces, complaints, permanent refusals)."""

    def is_suppressed(self, email: str) -> bool: ...
    def suppress(self, email: str, reason: str, source: str, now: float) -> bool:
        """Put ``email`` on the list; True if it was not on it already."""
        ...

    def lift(self, email: str) -> bool:
        """Take ``email`` off the list; True if it was on it."""
        ...

    def entries(self) -> dict[str, dict[str, str]]: ...


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
    def code_mailed(self, seconds_since_request: float) -> None: ...
    def email_suppressed(self) -> None: ...
    def address_suppressed(self, source: str) -> None: ...
