"""The messages that travel between the services, typed, and the vocabulary both sides share.

Each message class names its wire ``TYPE`` and parses itself from a delivered
body, raising ``MalformedMessage`` for anything it cannot use; a consumer
routes a delivery through a ``Router`` (common.messaging.consumer) so that
parsing and the type check happen once, before any handler runs.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from common.locales import LOCALE_MAX_LENGTH
from common.messaging.envelope import Incoming, MalformedMessage, Outgoing

EMAIL_MAX_LENGTH = 320
ID_MAX_LENGTH = 64
NAME_MAX_LENGTH = 200
CODE_MAX_LENGTH = 32
LINK_TOKEN_MAX_LENGTH = 128
CONFIRMATION_MAX_LENGTH = 128
TEMPLATE_NAME_MAX_LENGTH = 64
TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_]*")
NOTICE_CONTEXT_MAX_FIELDS = 16
NOTICE_CONTEXT_MAX_LENGTH = 1000
MOMENT_MAX_LENGTH = 40
DIGEST_LENGTH = 64
IP_MAX_LENGTH = 45
DEVICE_MAX_LENGTH = 200
REASON_MAX_LENGTH = 64
MAX_SESSION_IDS = 1000
DISABLE_REASON_MAX_LENGTH = 500


class Purpose(enum.StrEnum):
    """What a code proves. A code is stored, counted and accepted under its purpose only."""

    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 (a purpose, not a password)
    CHANGE_EMAIL = "change_email"
    SIGN_IN = "sign_in"
    DELETE_ACCOUNT = "delete_account"


class Verdict(enum.StrEnum):
    """The worker's answer to a submitted code; auth maps each to the contract's error."""

    VERIFIED = "verified"
    INVALID_CODE = "invalid_code"
    CODE_EXPIRED = "code_expired"
    TOO_MANY_ATTEMPTS = "too_many_attempts"


@dataclass(frozen=True)
class Message:
    """A message body with its wire type. Subclasses are frozen dataclasses of JSON-safe fields."""

    TYPE: ClassVar[str]
    # Types written before this class existed that it still reads: messages in
    # flight (or in an outbox) across a deploy must not be dead-lettered.
    LEGACY_TYPES: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        # One level, not ``asdict``: the fields are JSON values or flat dicts of them, and asdict's deep
        # copy was a fifth of building a message.
        return {field.name: _json_value(getattr(self, field.name)) for field in fields(self)}

    def outgoing(self, **envelope: Any) -> Outgoing:
        """The message ready to publish; ``envelope`` holds message_id, request_id, reply_to, correlation_id."""
        return Outgoing(type=self.TYPE, body=self.body(), **envelope)


@dataclass(frozen=True)
class CodeRequested(Message):
    """auth -> worker: mail a code for ``purpose`` to ``email``. The code derives from the message id."""

    TYPE: ClassVar[str] = "code.requested"
    LEGACY_TYPES: ClassVar[frozenset[str]] = frozenset({"account.registered", "account.verification_code_requested"})

    purpose: Purpose
    user_id: str
    email: str
    requested_at: float
    name: str | None = None
    # The request's place among the slot's requests (auth numbers a registration's); the worker
    # keeps only the newest request's code. Without one, the request is placed by its time.
    sequence: int | None = None
    # When the registration the code is for was made (the verification email says so).
    registered_at: float | None = None
    # The language of the email (BCP 47); requests queued before accounts had one carry none
    # and are written in DEFAULT_LOCALE.
    locale: str | None = None

    @property
    def order(self) -> int:
        """The request's sequence number, or its time in microseconds (as auth numbers requests)."""
        return self.sequence if self.sequence is not None else int(self.requested_at * 1_000_000)

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(
            purpose=_purpose(message, cls.LEGACY_TYPES),
            user_id=_string(message.body, "user_id", ID_MAX_LENGTH),
            email=_string(message.body, "email", EMAIL_MAX_LENGTH),
            requested_at=_number(message.body, "requested_at"),
            name=_optional_string(message.body, "name", NAME_MAX_LENGTH),
            sequence=_optional_integer(message.body, "sequence"),
            registered_at=_optional_number(message.body, "registered_at"),
            locale=_optional_string(message.body, "locale", LOCALE_MAX_LENGTH),
        )


@dataclass(frozen=True)
class CodeSubmitted(Message):
    """auth -> worker: judge a code (or a link token) for ``purpose`` and ``email``; the verdict is replied."""

    TYPE: ClassVar[str] = "code.submitted"
    LEGACY_TYPES: ClassVar[frozenset[str]] = frozenset({"email_code.submitted"})

    purpose: Purpose
    email: str
    code: str | None = None
    link_token: str | None = None
    submitted_at: float | None = None
    user_id: str | None = None
    # Auth's keyed hash of the code, opaque to the worker: handed back on code.verified so the
    # account remembers which code confirmed it even if the request that submitted it is gone.
    confirmation: str | None = None
    # Submitted from a device the account has signed in from: the account's daily guess budget, which
    # an attacker can spend, does not refuse it (its owner's way back in).
    proven_device: bool = False

    def __post_init__(self) -> None:
        if (self.code is None) == (self.link_token is None):
            raise MalformedMessage("a submission carries exactly one of 'code' and 'link_token'")

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        body = message.body
        return cls(
            purpose=_purpose(message, cls.LEGACY_TYPES),
            email=_string(body, "email", EMAIL_MAX_LENGTH),
            code=_optional_string(body, "code", CODE_MAX_LENGTH, non_empty=True),
            link_token=_optional_string(body, "link_token", LINK_TOKEN_MAX_LENGTH, non_empty=True),
            submitted_at=_optional_number(body, "submitted_at"),
            user_id=_optional_string(body, "user_id", ID_MAX_LENGTH),
            confirmation=_optional_string(body, "confirmation", CONFIRMATION_MAX_LENGTH),
            proven_device=_optional_flag(body, "proven_device"),
        )


@dataclass(frozen=True)
class CodeVerdict(Message):
    """worker -> auth (reply): the verdict; when verified, whose code it was, so auth can apply it."""

    TYPE: ClassVar[str] = "code.verdict"
    LEGACY_TYPES: ClassVar[frozenset[str]] = frozenset({"email_code.verdict"})

    verdict: Verdict
    attempts_left: int = 0
    purpose: Purpose | None = None
    user_id: str | None = None
    email: str | None = None
    # When verified: the sequence number of the code's request, so auth applies it only to the
    # registration the code was issued for.
    sequence: int | None = None

    @property
    def verified(self) -> bool:
        return self.verdict is Verdict.VERIFIED

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls.from_body(message.body)

    @classmethod
    def from_body(cls, body: dict) -> Self:
        """Replies arrive on the RPC inbox, outside any consumer, so they parse from the bare body."""
        verdict = body.get("verdict")
        if verdict not in set(Verdict):
            raise MalformedMessage(f"unknown verdict {str(verdict)[:40]!r}")
        attempts_left = body.get("attempts_left", 0)
        if isinstance(attempts_left, bool) or not isinstance(attempts_left, int):
            raise MalformedMessage("field 'attempts_left' must be an integer")
        purpose = body.get("purpose")
        return cls(
            verdict=Verdict(verdict),
            attempts_left=attempts_left,
            purpose=None if purpose is None else _known_purpose(purpose),
            user_id=_optional_string(body, "user_id", ID_MAX_LENGTH),
            email=_optional_string(body, "email", EMAIL_MAX_LENGTH),
            sequence=_optional_integer(body, "sequence"),
        )


@dataclass(frozen=True)
class CodeVerified(Message):
    """worker -> auth, durable (ACCOUNT_CONFIRMED_QUEUE): a code of ``purpose`` was verified.

    Published for every purpose before the verdict is replied, so that what the
    code proves is applied even if the request that submitted it is gone. Auth
    applies it once per ``submission_id`` (the submission's message id): what a
    reset or an address change applies was stored on the account under that id
    before the code was submitted, so no password travels on a queue.
    ``sequence`` is the code's request's (a registration's is applied only to the
    registration the code was issued for); ``confirmation`` is auth's keyed hash
    of the code, from the submission.
    """

    TYPE: ClassVar[str] = "code.verified"
    # A registration's confirmation, as published before codes had a purpose.
    LEGACY_TYPES: ClassVar[frozenset[str]] = frozenset({"account.confirmed"})

    user_id: str
    purpose: Purpose = Purpose.VERIFY_EMAIL
    submission_id: str | None = None
    email: str | None = None
    sequence: int | None = None
    confirmation: str | None = None

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(
            user_id=_string(message.body, "user_id", ID_MAX_LENGTH),
            purpose=_purpose(message, cls.LEGACY_TYPES),
            submission_id=_optional_string(message.body, "submission_id", ID_MAX_LENGTH),
            email=_optional_string(message.body, "email", EMAIL_MAX_LENGTH),
            sequence=_optional_integer(message.body, "sequence"),
            confirmation=_optional_string(message.body, "confirmation", CONFIRMATION_MAX_LENGTH),
        )


@dataclass(frozen=True)
class NoticeRequested(Message):
    """auth -> worker (ACCOUNT_CREATION_QUEUE): mail a notice, a named template pair, to ``email``.

    A notice carries no code and no token: ``context`` holds only what the
    template prints (plain strings). The worker sends it once per message id.
    """

    TYPE: ClassVar[str] = "notice.requested"

    template: str
    email: str
    context: dict[str, str]
    # The language of the email, as on CodeRequested.
    locale: str | None = None
    # The account the notice is about: a security notice carries a "this wasn't me" link for it.
    user_id: str | None = None

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        template = _string(message.body, "template", TEMPLATE_NAME_MAX_LENGTH)
        if not TEMPLATE_NAME.fullmatch(template):
            raise MalformedMessage("field 'template' must be a template name")
        context = message.body.get("context", {})
        if not isinstance(context, dict) or len(context) > NOTICE_CONTEXT_MAX_FIELDS:
            raise MalformedMessage("field 'context' must be an object of a few strings")
        for key, value in context.items():
            if not isinstance(value, str) or len(value) > NOTICE_CONTEXT_MAX_LENGTH:
                raise MalformedMessage(f"context field {str(key)[:40]!r} must be a short string")
        return cls(
            template=template,
            email=_string(message.body, "email", EMAIL_MAX_LENGTH),
            context=dict(context),
            locale=_optional_string(message.body, "locale", LOCALE_MAX_LENGTH),
            user_id=_optional_string(message.body, "user_id", ID_MAX_LENGTH),
        )


@dataclass(frozen=True)
class NotMeIssued(Message):
    """worker -> auth, durable (ACCOUNT_CONFIRMED_QUEUE): a security notice to ``email`` carries a
    "this wasn't me" link; ``digest`` is the SHA-256 of its token (the token itself is only in the mail).

    Published before the mail is sent, so auth knows the link before anybody can open it."""

    TYPE: ClassVar[str] = "not_me.issued"

    user_id: str
    digest: str
    email: str
    notice: str  # the notice's template: what the link undoes depends on it

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        digest = _string(message.body, "digest", DIGEST_LENGTH)
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise MalformedMessage("field 'digest' must be a SHA-256 in hex")
        notice = _string(message.body, "notice", TEMPLATE_NAME_MAX_LENGTH)
        if not TEMPLATE_NAME.fullmatch(notice):
            raise MalformedMessage("field 'notice' must be a template name")
        return cls(
            user_id=_string(message.body, "user_id", ID_MAX_LENGTH),
            digest=digest,
            email=_string(message.body, "email", EMAIL_MAX_LENGTH),
            notice=notice,
        )


@dataclass(frozen=True)
class AccountEvent(Message):
    """auth -> anyone bound to ACCOUNT_EVENTS_EXCHANGE: something happened to an account.

    ``TYPE`` is the routing key, ``event_id`` the AMQP message id (a consumer
    dedupes by it: an event is published at least once). No body carries a
    password, code, token or hash. Each subclass adds the contract's extra fields.
    """

    event_id: str
    occurred_at: str  # RFC 3339, UTC
    user_id: str
    email: str
    locale: str | None

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        body = message.body
        event_id = _string(body, "event_id", ID_MAX_LENGTH)
        if event_id != message.message_id:
            raise MalformedMessage("field 'event_id' must be the message id")
        return cls(
            event_id=event_id,
            occurred_at=_string(body, "occurred_at", MOMENT_MAX_LENGTH),
            user_id=_string(body, "user_id", ID_MAX_LENGTH),
            email=_string(body, "email", EMAIL_MAX_LENGTH),
            locale=_optional_string(body, "locale", LOCALE_MAX_LENGTH),
            **cls.parse_extra(body),
        )

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class UserRegistered(AccountEvent):
    TYPE: ClassVar[str] = "user.registered"

    name: str | None = None

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {"name": _optional_string(body, "name", NAME_MAX_LENGTH)}


@dataclass(frozen=True)
class UserVerified(AccountEvent):
    TYPE: ClassVar[str] = "user.verified"


@dataclass(frozen=True)
class UserPasswordChanged(AccountEvent):
    TYPE: ClassVar[str] = "user.password_changed"

    reason: str = "change"  # "change" or "reset"

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {"reason": _choice(body, "reason", ("change", "reset"))}


@dataclass(frozen=True)
class UserEmailChanged(AccountEvent):
    TYPE: ClassVar[str] = "user.email_changed"

    old_email: str = ""

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {"old_email": _string(body, "old_email", EMAIL_MAX_LENGTH)}


@dataclass(frozen=True)
class UserLoginFailures(AccountEvent):
    TYPE: ClassVar[str] = "user.login_failures"

    failures: int = 0

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        failures = _optional_integer(body, "failures")
        if failures is None or failures < 1:
            raise MalformedMessage("field 'failures' must be a positive integer")
        return {"failures": failures}


@dataclass(frozen=True)
class UserLocked(AccountEvent):
    TYPE: ClassVar[str] = "user.locked"

    until: str = ""  # RFC 3339, UTC

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {"until": _string(body, "until", MOMENT_MAX_LENGTH)}


@dataclass(frozen=True)
class UserUnlocked(AccountEvent):
    TYPE: ClassVar[str] = "user.unlocked"

    reason: str = "expired"  # "expired", "reset" or "admin"

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {"reason": _choice(body, "reason", ("expired", "reset", "admin"))}


@dataclass(frozen=True)
class UserLoginNewDevice(AccountEvent):
    TYPE: ClassVar[str] = "user.login_new_device"

    ip: str = ""
    device: str = ""

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {"ip": _string(body, "ip", IP_MAX_LENGTH), "device": _string(body, "device", DEVICE_MAX_LENGTH)}


@dataclass(frozen=True)
class UserSessionsRevoked(AccountEvent):
    """Sessions ended: the listed ones (``session_ids``), or every one the account had (``all``)."""

    TYPE: ClassVar[str] = "user.sessions_revoked"

    session_ids: tuple[str, ...] = ()
    all_sessions: bool = False
    reason: str = ""

    def body(self) -> dict[str, Any]:
        body = {name: value for name, value in super().body().items() if name not in ("session_ids", "all_sessions")}
        if self.all_sessions:
            body["all"] = True
        else:
            body["session_ids"] = list(self.session_ids)
        return body

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        reason = _string(body, "reason", REASON_MAX_LENGTH)
        if body.get("all") is True:
            return {"all_sessions": True, "reason": reason}
        session_ids = body.get("session_ids")
        if (
            not isinstance(session_ids, list)
            or not session_ids
            or len(session_ids) > MAX_SESSION_IDS
            or not all(isinstance(item, str) and 0 < len(item) <= ID_MAX_LENGTH for item in session_ids)
        ):
            raise MalformedMessage("field 'session_ids' must be a non-empty list of ids, or 'all' true")
        return {"session_ids": tuple(session_ids), "reason": reason}


@dataclass(frozen=True)
class UserEmailUndeliverable(AccountEvent):
    """The account's address is on the suppression list: it bounced hard, complained, or was refused
    for good; no more mail goes to it until an operator lifts it."""

    TYPE: ClassVar[str] = "user.email_undeliverable"

    reason: str = "bounce"  # "bounce", "complaint" or "refused"

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {"reason": _choice(body, "reason", SUPPRESSION_REASONS)}


@dataclass(frozen=True)
class UserDisabled(AccountEvent):
    """Support disabled the account: every session ended, no sign-in until it is enabled or ``until`` passes."""

    TYPE: ClassVar[str] = "user.disabled"

    reason: str = ""
    until: str | None = None  # RFC 3339, UTC; None: until enabled

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {
            "reason": _string(body, "reason", DISABLE_REASON_MAX_LENGTH),
            "until": _optional_string(body, "until", MOMENT_MAX_LENGTH),
        }


@dataclass(frozen=True)
class UserEnabled(AccountEvent):
    TYPE: ClassVar[str] = "user.enabled"

    reason: str = "admin"  # "admin" (support enabled it) or "expired" (the disable's ``until`` passed)

    @classmethod
    def parse_extra(cls, body: dict) -> dict[str, Any]:
        return {"reason": _choice(body, "reason", ("admin", "expired"))}


ACCOUNT_EVENTS: tuple[type[AccountEvent], ...] = (
    UserRegistered,
    UserVerified,
    UserPasswordChanged,
    UserEmailChanged,
    UserLoginFailures,
    UserLocked,
    UserUnlocked,
    UserLoginNewDevice,
    UserSessionsRevoked,
    UserEmailUndeliverable,
    UserDisabled,
    UserEnabled,
)

# Why an address is on the suppression list, and who said so.
SUPPRESSION_REASONS = ("bounce", "complaint", "refused")
SUPPRESSION_SOURCES = ("smtp", "ses", "postmark")


@dataclass(frozen=True)
class AddressSuppressed(Message):
    """The address gets no more mail. worker -> auth (ACCOUNT_CONFIRMED_QUEUE) after a transport
    refused it for good; auth -> worker (ACCOUNT_CREATION_QUEUE) after a provider's bounce or
    complaint report reached auth's webhook. Each side records it once and does not echo it."""

    TYPE: ClassVar[str] = "mail.suppressed"

    email: str
    reason: str
    source: str

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(
            email=_string(message.body, "email", EMAIL_MAX_LENGTH),
            reason=_choice(message.body, "reason", SUPPRESSION_REASONS),
            source=_choice(message.body, "source", SUPPRESSION_SOURCES),
        )


@dataclass(frozen=True)
class SuppressionLifted(Message):
    """The address gets mail again. worker -> auth (ACCOUNT_CONFIRMED_QUEUE) after an operator's
    ``suppressions lift``; auth -> worker (ACCOUNT_CREATION_QUEUE) after support's
    ``DELETE /admin/suppressions/{email}``. Each side records it and does not echo it."""

    TYPE: ClassVar[str] = "mail.suppression_lifted"

    email: str

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(email=_string(message.body, "email", EMAIL_MAX_LENGTH))


@dataclass(frozen=True)
class LockDue(Message):
    """auth -> auth, through a delay queue: the lock ``lock_id`` of the account is due to end.

    Published when the account is locked with a per-message TTL of the lock's
    length; the broker dead-letters it into ACCOUNT_CONFIRMED_QUEUE when the
    TTL runs out, so the lock ends (and its email goes out) without a sleeping
    thread or a login to notice it.
    """

    TYPE: ClassVar[str] = "lock.due"

    user_id: str
    lock_id: str

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(
            user_id=_string(message.body, "user_id", ID_MAX_LENGTH),
            lock_id=_string(message.body, "lock_id", ID_MAX_LENGTH),
        )


@dataclass(frozen=True)
class DisableDue(Message):
    """auth -> auth, through a delay queue: disable ``disable_id`` of the account reaches its ``until``.

    Published with the disable, its TTL the time left, as ``LockDue`` is; the account is enabled when it
    comes back, unless support enabled it, or disabled it anew, meanwhile."""

    TYPE: ClassVar[str] = "disable.due"

    user_id: str
    disable_id: str

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(
            user_id=_string(message.body, "user_id", ID_MAX_LENGTH),
            disable_id=_string(message.body, "disable_id", ID_MAX_LENGTH),
        )


@dataclass(frozen=True)
class DeletionDue(Message):
    """auth -> auth, through the long delay queue: the grace of deletion ``deletion_id`` is over.

    Published with the account's deletion, with the grace as its TTL, as ``LockDue`` is; the
    account is erased when it comes back, unless it was restored (or deleted anew) meanwhile."""

    TYPE: ClassVar[str] = "deletion.due"

    user_id: str
    deletion_id: str

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(
            user_id=_string(message.body, "user_id", ID_MAX_LENGTH),
            deletion_id=_string(message.body, "deletion_id", ID_MAX_LENGTH),
        )


@dataclass(frozen=True)
class AccountErased(Message):
    """auth -> worker (ACCOUNT_CREATION_QUEUE): an account is being erased; forget every key that names
    its address or id (pending codes, their quotas and locks). The one message that carries the address
    of an erased account, and only to the worker."""

    TYPE: ClassVar[str] = "account.erased"

    user_id: str
    email: str

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(
            user_id=_string(message.body, "user_id", ID_MAX_LENGTH),
            email=_string(message.body, "email", EMAIL_MAX_LENGTH),
        )


@dataclass(frozen=True)
class UserDeleted(Message):
    """The public event of an erasure: the account's id and nothing else about it (no address, no locale)."""

    TYPE: ClassVar[str] = "user.deleted"

    event_id: str
    occurred_at: str
    user_id: str

    @classmethod
    def parse(cls, message: Incoming) -> Self:
        return cls(
            event_id=_string(message.body, "event_id", ID_MAX_LENGTH),
            occurred_at=_string(message.body, "occurred_at", MOMENT_MAX_LENGTH),
            user_id=_string(message.body, "user_id", ID_MAX_LENGTH),
        )


def _choice(body: dict, name: str, choices: tuple[str, ...]) -> str:
    value = body.get(name)
    if value not in choices:
        raise MalformedMessage(f"field {name!r} must be one of {', '.join(choices)}")
    return str(value)


def _purpose(message: Incoming, legacy_types: frozenset[str]) -> Purpose:
    raw = message.body.get("purpose")
    if raw is None and message.type in legacy_types:
        return Purpose.VERIFY_EMAIL  # written before codes had a purpose: a registration's
    return _known_purpose(raw)


def _known_purpose(raw: object) -> Purpose:
    if not isinstance(raw, str) or raw not in set(Purpose):
        raise MalformedMessage(f"unknown purpose {str(raw)[:40]!r}")
    return Purpose(raw)


def _string(body: dict, name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise MalformedMessage(f"field {name!r} must be a non-empty string")
    return value


def _optional_string(body: dict, name: str, max_length: int, non_empty: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length or (non_empty and not value):
        raise MalformedMessage(f"field {name!r} must be a string")
    return value


def _number(body: dict, name: str) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedMessage(f"field {name!r} must be a number")
    return value


def _optional_number(body: dict, name: str) -> float | None:
    return None if body.get(name) is None else _number(body, name)


def _optional_flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise MalformedMessage(f"field {name!r} must be true or false")
    return value


def _optional_integer(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedMessage(f"field {name!r} must be an integer")
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return dict(value) if isinstance(value, dict) else value
