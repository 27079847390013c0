"""One-time codes, for any purpose: how they are made, stored and judged. Pure Python, no I/O."""

from __future__ import annotations

import base64
import enum
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256

from common.messaging.messages import Purpose, Verdict

CODE_DIGITS = 6

__all__ = [
    "CODE_DIGITS",
    "Judgement",
    "PendingCode",
    "Presented",
    "Purpose",
    "Slot",
    "Verdict",
    "code_digest",
    "code_for_request",
    "describe_moment",
    "judge_attempt",
    "link_digest",
    "link_token_for_request",
    "not_me_digest",
    "not_me_token_for_message",
    "restore_token_for_message",
    "within_quota",
]


@dataclass(frozen=True)
class Slot:
    """Where a code lives: one live code per purpose and address, so codes of two purposes never meet."""

    purpose: Purpose
    email: str


def code_for_request(key: str, message_id: str) -> str:
    """The code for one code request: a keyed hash (HMAC-SHA256) of its message id.

    The auth service draws each request's id from ``secrets`` (128 bits), and
    the key is secret, so the code is as unpredictable as one drawn from
    ``secrets`` directly. Unlike a fresh draw, a redelivered request (the worker
    died after mailing, before recording that it had) yields the same code
    again, so a second email never voids the first.
    """
    mac = hmac.new(key.encode(), f"code\x00{message_id}".encode(), sha256).digest()
    return f"{int.from_bytes(mac, 'big') % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def link_token_for_request(key: str, message_id: str) -> str:
    """The single-use link token of one code request: derived like the code, never equal to it."""
    mac = hmac.new(key.encode(), f"link\x00{message_id}".encode(), sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def not_me_token_for_message(key: str, message_id: str) -> str:
    """The "this wasn't me" token of one security notice: stable on redelivery, useless without the key."""
    mac = hmac.new(key.encode(), f"not-me\x00{message_id}".encode(), sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def restore_token_for_message(key: str, message_id: str) -> str:
    """The restore token of one deletion notice: a label of its own, so it is no "this wasn't me" token."""
    mac = hmac.new(key.encode(), f"restore\x00{message_id}".encode(), sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def not_me_digest(token: str) -> str:
    """What auth stores of a "this wasn't me" token (it never sees the key the token is derived under)."""
    return sha256(token.encode()).hexdigest()


def code_digest(key: str, slot: Slot, code: str) -> str:
    """Keyed hash binding a code to its purpose and address: useless without the key, and for any other slot."""
    return _digest(key, "code", slot, code)


def link_digest(key: str, slot: Slot, token: str) -> str:
    return _digest(key, "link", slot, token)


def _digest(key: str, kind: str, slot: Slot, secret: str) -> str:
    return hmac.new(key.encode(), f"{kind}\x00{slot.purpose}\x00{slot.email}\x00{secret}".encode(), sha256).hexdigest()


def digests_match(stored: str, presented: str) -> bool:
    return hmac.compare_digest(stored.encode(), presented.encode())


class Proof(enum.Enum):
    CODE = "code"
    LINK = "link"


@dataclass(frozen=True)
class Presented:
    """What a submission presents, as a digest: the typed code or the token of the emailed link."""

    proof: Proof
    digest: str

    @classmethod
    def code(cls, key: str, slot: Slot, code: str) -> Presented:
        return cls(Proof.CODE, code_digest(key, slot, code))

    @classmethod
    def link(cls, key: str, slot: Slot, token: str) -> Presented:
        return cls(Proof.LINK, link_digest(key, slot, token))


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    attempts_left: int = 0
    user_id: str | None = None
    # The sequence number of the code that verified: auth applies it only to the registration it was issued for.
    sequence: int | None = None


@dataclass(frozen=True)
class PendingCode:
    """What the worker keeps in Redis while a code is live (one per slot)."""

    slot: Slot
    user_id: str
    code_digest: str
    attempts: int
    message_id: str
    requested_at: float
    mail_sent: bool
    consumed_by: str | None = None
    link_digest: str = ""
    # The code request's place among the address's requests: only a higher one replaces this one.
    sequence: int = 0
    # A newer request that could not be given a code (the address's quota was spent): the
    # earlier codes are void all the same, and this one holds none.
    voided: bool = False

    @property
    def burned(self) -> bool:
        return self.code_digest == "" and not self.voided

    def superseded_by(self, sequence: int) -> bool:
        """May a request numbered ``sequence`` replace this one? Not an older one. Equal numbers (two
        requests without one, placed by the same microsecond) are as new as each other: the later wins."""
        return sequence >= self.sequence


def judge_attempt(
    pending: PendingCode | None, presented: Presented, max_attempts: int, submitted_at: float | None = None
) -> Judgement:
    """The verdict on one guess, given the code as it stands (before the guess).

    A guess submitted before the current code was requested (it waited in the
    queue while a newer code went out) was meant for an older code: it is
    answered as expired and spends none of the new code's attempts. So is a
    link that does not match: its token is too long to guess, so it is the link
    of an older code, not an attack on this one.
    """
    if pending is None or pending.consumed_by is not None or pending.voided:
        return Judgement(Verdict.CODE_EXPIRED)
    if submitted_at is not None and submitted_at < pending.requested_at:
        return Judgement(Verdict.CODE_EXPIRED)
    if pending.burned or pending.attempts >= max_attempts:
        return Judgement(Verdict.TOO_MANY_ATTEMPTS)
    if presented.proof is Proof.LINK:
        if pending.link_digest and digests_match(pending.link_digest, presented.digest):
            return Judgement(Verdict.VERIFIED, user_id=pending.user_id, sequence=pending.sequence)
        return Judgement(Verdict.CODE_EXPIRED)
    if digests_match(pending.code_digest, presented.digest):
        return Judgement(Verdict.VERIFIED, user_id=pending.user_id, sequence=pending.sequence)
    attempts_left = max_attempts - pending.attempts - 1
    if attempts_left <= 0:
        return Judgement(Verdict.TOO_MANY_ATTEMPTS)
    return Judgement(Verdict.INVALID_CODE, attempts_left=attempts_left)


def within_quota(sent_last_hour: int, sent_last_day: int, per_hour: int, per_day: int) -> bool:
    return sent_last_hour < per_hour and sent_last_day < per_day


def describe_moment(epoch_seconds: float) -> str:
    """A time as the emails print it: UTC, to the minute (no six-digit number that could pass for a code)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
