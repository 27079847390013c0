"""Webhook rules: endpoints, their secrets and event patterns, the Standard Webhooks signature, the
retry schedule and when an endpoint is given up on. Pure Python, no I/O.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com): ``v1,`` + base64 of
HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}``, keyed by the base64-decoded part of
the secret after ``whsec_``. During a rotation the old secret signs beside the new one for
``ROTATION_OVERLAP``, so a receiver may switch at any time within it.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix of every secret, not one)
SECRET_BYTES = 24
ROTATION_OVERLAP = timedelta(hours=24)
MAX_PATTERNS = 32
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 500
# AMQP topic notation over event names: ``*`` is one word, ``#`` any number of words.
PATTERN_WORD = re.compile(r"[a-z0-9_]+|\*|#")
MAX_PATTERN_LENGTH = 100


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # an attempt is due now
    RETRYING = "retrying"  # the last attempt failed; the next is scheduled
    DELIVERED = "delivered"
    FAILED = "failed"  # the schedule ran out (or the endpoint is gone or disabled)
    REFUSED = "refused"  # the URL resolves to an address the guard refuses: never retried


class AttemptOutcome(enum.StrEnum):
    SUCCESS = "success"  # a 2xx answer
    HTTP_ERROR = "http_error"  # any other status
    REDIRECT = "redirect"  # a 3xx: never followed
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    REFUSED = "refused"  # the SSRF guard refused the address: no connection was made


class InvalidEndpoint(ValueError):
    """An endpoint's URL, patterns or description are refused; ``field`` names which."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Secret:
    value: str  # whsec_...
    # None: the current secret. A rotated-out secret signs until this moment.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    events: tuple[str, ...]
    secrets: tuple[Secret, ...]
    created_at: datetime
    description: str | None = None
    enabled: bool = True
    disabled_at: datetime | None = None
    # Since when every attempt failed (None after a success, or before any failure).
    failing_since: datetime | None = None

    def signing_secrets(self, now: datetime) -> list[str]:
        return [secret.value for secret in self.secrets if secret.expires_at is None or secret.expires_at > now]

    def rotated(self, new_secret: str, now: datetime) -> Endpoint:
        """The current secret keeps signing for ``ROTATION_OVERLAP``; secrets already rotated out keep their end."""
        kept = [
            secret if secret.expires_at is not None else replace(secret, expires_at=now + ROTATION_OVERLAP)
            for secret in self.secrets
            if secret.expires_at is None or secret.expires_at > now
        ]
        return replace(self, secrets=(Secret(new_secret), *kept))


@dataclass(frozen=True)
class Subscription:
    """What an enabled endpoint wants: its id and its patterns."""

    endpoint_id: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    at: datetime
    outcome: AttemptOutcome
    duration_ms: int
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class AttemptResult:
    """What one POST came to, as the HTTP client saw it."""

    outcome: AttemptOutcome
    duration_seconds: float
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    body: str  # the event's JSON exactly as published: what is signed and sent
    created_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: tuple[Attempt, ...] = ()
    next_attempt_at: datetime | None = None
    # The W3C trace context of the event's processing, so the attempts join the event's trace.
    trace_headers: dict[str, str] = field(default_factory=dict)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(signature(secret, message_id, timestamp, body) for secret in signing_secrets)


def delivery_headers(signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(signing_secrets, message_id, timestamp, body),
    }


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """One delivery per event and endpoint: a redelivered event finds its deliveries already there."""
    return hashlib.sha256(f"{event_id}\n{endpoint_id}".encode()).hexdigest()[:32]


def topic_matches(pattern: str, event_type: str) -> bool:
    return _matches(pattern.split("."), event_type.split("."))


def _matches(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_matches(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _matches(rest, words[1:])


def valid_patterns(events: object) -> tuple[str, ...]:
    if not isinstance(events, list) or not events or len(events) > MAX_PATTERNS:
        raise InvalidEndpoint("events", f"must be a list of 1 to {MAX_PATTERNS} event names or patterns")
    patterns = []
    for pattern in events:
        if (
            not isinstance(pattern, str)
            or len(pattern) > MAX_PATTERN_LENGTH
            or not all(PATTERN_WORD.fullmatch(word) for word in pattern.split("."))
        ):
            raise InvalidEndpoint("events", "each must be an event name or a pattern such as user.* or user.verified")
        patterns.append(pattern)
    return tuple(dict.fromkeys(patterns))


def valid_description(description: object) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidEndpoint("description", f"must be a string of at most {MAX_DESCRIPTION_LENGTH} characters")
    return description


def next_retry_delay(failed_attempts: int, schedule: Sequence[int]) -> int | None:
    """Seconds before the next attempt after ``failed_attempts`` failures, or None: the schedule ran out."""
    if failed_attempts < 1 or failed_attempts > len(schedule):
        return None
    return schedule[failed_attempts - 1]


def retried(outcome: AttemptOutcome) -> bool:
    """A refusal by the guard is final: the address will not become public by waiting."""
    return outcome not in (AttemptOutcome.SUCCESS, AttemptOutcome.REFUSED)


def given_up(failing_since: datetime | None, now: datetime, disable_after: timedelta) -> bool:
    return failing_since is not None and now - failing_since >= disable_after


def subscribers(subscriptions: Iterable[Subscription], event_type: str) -> list[str]:
    """The ids of the endpoints whose patterns match the event."""
    return [
        subscription.endpoint_id
        for subscription in subscriptions
        if any(topic_matches(pattern, event_type) for pattern in subscription.events)
    ]
