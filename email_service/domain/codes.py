"""One-time codes, for any purpose: how they are made, stored and judged. Pure Python, no I/O."""

from __future__ import annotations

import base64
import enum
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256

from common.messaging.messages import Purpose, Verdict

CODE_DIGITS = 6

__all__ = [
    "CODE_DIGITS",
    "DECOY_PURPOSES",
    "VOIDED_OVER_QUOTA",
    "GuessBudget",
    "GuessRules",
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
    "not_me_token_for_message",
    "restore_token_for_message",
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


# Purposes whose code is asked for by address alone (forgot, sign-in without a password): a wrong code for
# an address without a live code of the purpose (no account, a pending one, none asked) is answered as for a
# live one, invalid with attempts counting down, so the second step tells no more than the first (202 for
# every address) did. The registration's confirm keeps its 410 for an unknown address: the contract says so.
DECOY_PURPOSES = frozenset({Purpose.RESET_PASSWORD, Purpose.SIGN_IN})


# Purposes whose request over the quota still voids the live code: a registration of a pending address voids
# every earlier code (the contract). Any other request over the quota leaves the live code alone: forgot and
# sign-in codes are asked for by address alone, so anyone could otherwise void the code the owner holds.
VOIDED_OVER_QUOTA = frozenset({Purpose.VERIFY_EMAIL})


@dataclass(frozen=True)
class GuessBudget:
    """The wrong codes an account was given in the last day, over every purpose, and how many it may be.

    Once ``spent`` reaches ``allowed`` every code of the account is refused (the right one too) until the
    day's window frees some, except a submission from a device the account has signed in from
    (``proven``): the budget bounds guessing per account, and the owner's own devices still get in."""

    spent: int
    allowed: int
    proven: bool = False

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.allowed and not self.proven


@dataclass(frozen=True)
class GuessRules:
    """What a guess is judged under besides its code: decoys for its purpose (``DECOY_PURPOSES``, living
    ``ttl_seconds`` like a code), the account's daily guess budget (None: none), whether it comes from a
    proven device, and the time the budget's day ends at."""

    decoys: bool = False
    ttl_seconds: int = 0
    budget: int | None = None
    proven_device: bool = False
    now: float = 0.0


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    attempts_left: int = 0
    user_id: str | None = None
    # The sequence number of the code that verified: auth applies it only to the registration it was issued for.
    sequence: int | None = None
    # A wrong code for a live one: it spends the account's guess budget (not part of the remembered verdict).
    counted: bool = field(default=False, compare=False)


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
    # The code request's place among the address's requests: an older one never replaces this one (the rule
    # lives in adapters/lua/start_issue.lua alone, checked by tests/unit/test_issue_script.py).
    sequence: int = 0
    # A newer registration that could not be given a code (the address's quota was spent): the
    # earlier codes are void all the same, and this one holds none (``VOIDED_OVER_QUOTA``).
    voided: bool = False

    @property
    def burned(self) -> bool:
        return self.code_digest == "" and not self.voided


def judge_attempt(
    pending: PendingCode | None,
    presented: Presented,
    max_attempts: int,
    submitted_at: float | None = None,
    *,
    decoy_attempts: int | None = None,
    budget: GuessBudget | None = None,
) -> Judgement:
    """The verdict on one guess, given the code as it stands (before the guess).

    A guess submitted before the current code was requested (it waited in the
    queue while a newer code went out) was meant for an older code: it is
    answered as expired and spends none of the new code's attempts. So is a
    link that does not match: its token is too long to guess, so it is the link
    of an older code, not an attack on this one.

    ``decoy_attempts`` (a purpose of ``DECOY_PURPOSES``: the wrong guesses the slot got while it held
    no live code) answers a slot without a live code as if it had one. ``budget`` is the account's
    wrong guesses of the day: spent, it refuses the code, right or wrong, and spends nothing.
    """
    if pending is None or pending.consumed_by is not None or pending.voided:
        if decoy_attempts is not None and presented.proof is Proof.CODE:
            return _wrong(max_attempts - decoy_attempts - 1, counted=False)
        return Judgement(Verdict.CODE_EXPIRED)
    if submitted_at is not None and submitted_at < pending.requested_at:
        return Judgement(Verdict.CODE_EXPIRED)
    if pending.burned or pending.attempts >= max_attempts:
        return Judgement(Verdict.TOO_MANY_ATTEMPTS)
    if presented.proof is Proof.LINK:
        if pending.link_digest and digests_match(pending.link_digest, presented.digest):
            return Judgement(Verdict.VERIFIED, user_id=pending.user_id, sequence=pending.sequence)
        return Judgement(Verdict.CODE_EXPIRED)
    if budget is not None and budget.exhausted:
        return Judgement(Verdict.TOO_MANY_ATTEMPTS)
    if digests_match(pending.code_digest, presented.digest):
        return Judgement(Verdict.VERIFIED, user_id=pending.user_id, sequence=pending.sequence)
    return _wrong(max_attempts - pending.attempts - 1, counted=True)


def _wrong(attempts_left: int, *, counted: bool) -> Judgement:
    if attempts_left <= 0:
        return Judgement(Verdict.TOO_MANY_ATTEMPTS, counted=counted)
    return Judgement(Verdict.INVALID_CODE, attempts_left=attempts_left, counted=counted)


def describe_moment(epoch_seconds: float) -> str:
    """A time as the emails print it: UTC, to the minute (no six-digit number that could pass for a code)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
