"""The rules of the sign-up abuse checks: breached passwords by k-anonymity, disposable domains, CAPTCHA answers.

Pure: the HTTP calls that feed them are adapters (adapters/pwned_passwords.py, adapters/captcha.py).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

PREFIX_LENGTH = 5
SUFFIX_LENGTH = 35
# A suffix is 35 hex digits; stored with a leading zero it is 18 whole bytes, so a range is kept
# as bytes, not as a thousand strings: what bounds the cache's memory is the count of ranges.
SUFFIX_BYTES = 18
# Turnstile's tokens are at most 2,048 characters; hCaptcha's are longer, though well within this.
CAPTCHA_TOKEN_MAX_LENGTH = 8192


class Refusal(enum.StrEnum):
    """Why a request was turned away; the label of the refusals metric."""

    CAPTCHA_REQUIRED = "captcha_required"
    CAPTCHA_INVALID = "captcha_invalid"
    CAPTCHA_UNAVAILABLE = "captcha_unavailable"
    BREACHED_PASSWORD = "breached_password"  # noqa: S105 (a label, not a password)
    BREACH_CHECK_UNAVAILABLE = "breach_check_unavailable"
    DISPOSABLE_ADDRESS = "disposable_address"


BREACHED_MESSAGE = (
    "This password has appeared in a data breach, so attackers try it first. Choose another one; "
    "a few unrelated words make a strong one."
)
BREACH_CHECK_UNAVAILABLE_MESSAGE = "The password could not be checked against known breaches. Try again shortly."
DISPOSABLE_MESSAGE = (
    "Addresses at disposable-mail services cannot be used for an account. Use an address you will keep."
)


@dataclass(frozen=True)
class PasswordDigest:
    """A password as the range API is asked about it: the SHA-1's first five hex digits leave, the rest stays."""

    prefix: str
    suffix: bytes

    @classmethod
    def of(cls, password: str) -> PasswordDigest:
        # SHA-1 is the API's index, not a way of storing the password: the stored hash is bcrypt's.
        digest = hashlib.sha1(password.encode("utf-8")).hexdigest().upper()  # noqa: S324
        return cls(prefix=digest[:PREFIX_LENGTH], suffix=_suffix_bytes(digest[PREFIX_LENGTH:]))

    def __repr__(self) -> str:
        # Prefix and suffix together are the whole SHA-1, which a dictionary reverses: never in a log or a trace.
        return "PasswordDigest(...)"


def _suffix_bytes(suffix: str) -> bytes:
    return bytes.fromhex("0" + suffix)


class PasswordRange:
    """The breached suffixes of one prefix, as the range API listed them, padding entries left out."""

    __slots__ = ("_suffixes",)

    def __init__(self, suffixes: bytes):
        self._suffixes = suffixes

    @classmethod
    def parse(cls, body: str) -> PasswordRange:
        """``SUFFIX:COUNT`` per line. With ``Add-Padding: true`` the API adds made-up suffixes with a count
        of 0 so that every answer has about the same size: those are no breach. A line that is not of the
        form is skipped; a range API cannot make a password refused by sending garbage."""
        found = bytearray()
        for line in body.splitlines():
            suffix, _, count = line.strip().partition(":")
            if len(suffix) != SUFFIX_LENGTH or not count.strip().isdigit() or int(count) == 0:
                continue
            try:
                found += _suffix_bytes(suffix)
            except ValueError:
                continue
        return cls(bytes(found))

    def __len__(self) -> int:
        return len(self._suffixes) // SUFFIX_BYTES

    @property
    def size_bytes(self) -> int:
        return len(self._suffixes)

    def contains(self, digest: PasswordDigest) -> bool:
        """Every line is compared, each in constant time, whatever matched: the time taken says nothing
        of where, or whether, the suffix is in the range."""
        found = False
        suffixes = self._suffixes
        for start in range(0, len(suffixes), SUFFIX_BYTES):
            found |= hmac.compare_digest(suffixes[start : start + SUFFIX_BYTES], digest.suffix)
        return found


def normalize_domain(domain: str) -> str:
    return domain.strip().strip(".").lower()


def read_domain_list(lines: Iterable[str]) -> frozenset[str]:
    """One domain per line; blank lines and ``#`` comments are skipped."""
    domains = set()
    for line in lines:
        domain = normalize_domain(line.split("#", 1)[0])
        if domain:
            domains.add(domain)
    return frozenset(domains)


@dataclass(frozen=True)
class DisposableDomains:
    """Which address domains are refused: a listed domain and every subdomain of one, unless the
    operator allowed that domain or one of its parents."""

    blocked: frozenset[str]
    allowed: frozenset[str] = frozenset()

    def refuses(self, address: str) -> bool:
        domain = normalize_domain(address.rpartition("@")[2])
        candidates = list(_self_and_parents(domain))
        if any(candidate in self.allowed for candidate in candidates):
            return False
        return any(candidate in self.blocked for candidate in candidates)


def _self_and_parents(domain: str) -> Iterable[str]:
    """``a.b.example.com`` -> itself, ``b.example.com``, ``example.com`` (a bare top-level domain is no
    disposable service: the list names registered domains)."""
    labels = domain.split(".")
    for start in range(len(labels) - 1):
        yield ".".join(labels[start:])


class CaptchaProvider(enum.StrEnum):
    TURNSTILE = "turnstile"
    HCAPTCHA = "hcaptcha"

    @property
    def verify_url(self) -> str:
        return VERIFY_URLS[self]


VERIFY_URLS = {
    CaptchaProvider.TURNSTILE: "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    CaptchaProvider.HCAPTCHA: "https://api.hcaptcha.com/siteverify",
}


# The providers' own trouble, answered with success false: the token was not judged, so it is not refused.
PROVIDER_ERRORS = frozenset({"internal-error"})


def captcha_verdict(answer: object) -> bool | None:
    """The siteverify answer of both providers: True for a JSON object whose ``success`` is true, None
    if the provider says it failed itself, False for anything else (a string ``"true"`` included)."""
    if not isinstance(answer, dict):
        return False
    if answer.get("success") is True:
        return True
    codes = answer.get("error-codes")
    if isinstance(codes, list) and PROVIDER_ERRORS.intersection(code for code in codes if isinstance(code, str)):
        return None
    return False
