"""Accounts and their rules. Pure Python, no I/O."""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from auth_service.domain.common_passwords import is_common
from auth_service.domain.password_patterns import is_repeated_or_sequential
from common.messaging.messages import Purpose

PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = 72  # bcrypt ignores everything past 72 bytes
EMAIL_MAX_LENGTH = 254
NAME_MAX_LENGTH = 100
# Characters that reorder or hide the text around them (Unicode bidirectional
# controls: embeddings, overrides, isolates and marks). In a name shown to
# someone else they can make "exe.pdf" read as "fdp.exe".
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Controls (C0, DEL, C1) and the line and paragraph separators: header and layout tricks.
LAYOUT_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


class Status(enum.StrEnum):
    PENDING_VERIFICATION = "pending_verification"
    VERIFIED = "verified"
    # The owner confirmed a deletion: nobody signs in until the grace ends (erased) or a restore.
    PENDING_DELETION = "pending_deletion"


@dataclass(frozen=True)
class TrustedDevice:
    device: str  # a device_key, never the User-Agent or address itself
    until: datetime


@dataclass(frozen=True)
class Deletion:
    """A deletion the owner confirmed with a code mailed to ``email``, erased at ``delete_after``.

    ``id`` names this deletion: its timer and its restore link work for it alone, so neither an
    earlier deletion's link nor its late timer touches a later one. ``notice_id`` is the message id
    of the notice that carries the restore link: the worker mints the link from it."""

    id: str
    email: str
    requested_at: datetime
    delete_after: datetime
    notice_id: str


@dataclass(frozen=True)
class LeftAddress:
    """An address the account moved away from by a confirmed change, undoable from its mailbox until
    ``undo_until`` (and reserved for the account until then: nobody else may register or take it)."""

    email: str
    left_at: datetime
    undo_until: datetime


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str | None
    password_hash: str
    status: Status
    # When the registration whose password the account holds was made (a later
    # registration of a pending address replaces it).
    created_at: datetime
    # Code requests of one address are ordered by ``code_seq`` (see
    # ``next_sequence``); ``registered_seq`` is the one of the current
    # registration, so a code issued for an earlier registration cannot confirm it.
    registered_seq: int = 0
    code_seq: int = 0
    # A pending account is deleted at this time (MongoDB TTL index) and treated as absent from then on.
    expires_at: datetime | None = None
    # Keyed hash of the code that confirmed the account (never the code).
    confirmed_code_tag: str | None = None
    # The address an email change waits to confirm with its code, if one was asked for.
    pending_email: str | None = None
    # Stamped in every access and refresh token; raising it refuses all of them (password change, reset).
    token_version: int = 0
    # The language of the account's emails (a shipped BCP 47 tag, common/locales.py); None for
    # accounts registered before there was a choice, whose emails are in DEFAULT_LOCALE.
    locale: str | None = None
    # The emailed second factor: asked at a password login from a device not trusted until now.
    mfa_enabled: bool = False
    trusted_devices: tuple[TrustedDevice, ...] = ()
    # The devices (``device_key`` hashes) the account signed in from, the most recent ones: a proven
    # device is let through the limits an attacker can spend (docs/security.md, "The owner's recovery
    # does not share the attacker's counters").
    known_devices: tuple[str, ...] = ()
    # Failed logins in a row (see domain/lockout.py), and the lock they set, if any.
    failed_logins: int = 0
    locked_until: datetime | None = None
    lock_id: str | None = None
    # A confirmed deletion (service_layer/flows/deletion.py): when the grace ends, and which deletion it is.
    deletion: Deletion | None = None
    # Addresses left by confirmed changes, oldest first, while their old mailbox may still undo them.
    address_history: tuple[LeftAddress, ...] = ()
    # Set by a "this wasn't me" link: no password opens the account, nor may its address or second
    # factor be changed, until a reset (the thief may know the password).
    must_reset: bool = False
    # Two mailboxes claimed the account (an undo contested): nothing opens it until support decides.
    frozen_at: datetime | None = None

    @property
    def verified(self) -> bool:
        """Has the address been confirmed? An account waiting for its erasure had it confirmed too."""
        return self.status in (Status.VERIFIED, Status.PENDING_DELETION)

    @property
    def pending_deletion(self) -> bool:
        return self.status is Status.PENDING_DELETION

    def trusts(self, device: str, now: datetime) -> bool:
        """Has this device (its ``device_key``) passed the second factor recently enough to skip it?"""
        return any(trusted.device == device and trusted.until > now for trusted in self.trusted_devices)

    def knows(self, device: str) -> bool:
        """Has the account signed in from this device (its ``device_key``)?"""
        return device in self.known_devices

    @property
    def frozen(self) -> bool:
        return self.frozen_at is not None

    def undoable_from(self, email: str, now: datetime) -> LeftAddress | None:
        """The earliest change away from ``email`` its mailbox may still undo, if any."""
        return next((left for left in self.address_history if left.email == email and left.undo_until > now), None)

    def reserves(self, email: str, now: datetime) -> bool:
        """Is ``email`` an address this account left and may still take back?"""
        return self.undoable_from(email, now) is not None

    def expired(self, now: datetime) -> bool:
        return not self.verified and self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class PendingChange:
    """What a code's success will apply, stored on the account before the code is submitted.

    Keyed by the submission id, which the worker's durable ``code.verified``
    names, so the change is applied once whether the waiting request or auth's
    consumer gets there first. A reset stores the new password's hash (the
    password itself never leaves this service), an address change the address.
    """

    submission_id: str
    purpose: Purpose
    stored_at: datetime
    password_hash: str | None = None
    new_email: str | None = None


@dataclass(frozen=True)
class NotMeLink:
    """A security notice's "this wasn't me" link, as auth keeps it: the SHA-256 of its token only."""

    digest: str
    email: str  # the address the notice went to: the reset code goes there
    notice: str  # which notice: an undo's notice to the address it left contests the undo
    expires_at: datetime
    used: bool = False
    # Voided by another link of the account pressed first: one undo per incident.
    void: bool = False


def normalize_email(email: str) -> str:
    return email.strip().lower()


def next_sequence(previous: int, now: datetime) -> int:
    """The number of a new code request for an address: above every earlier one.

    Microseconds since the epoch, so that numbers keep rising even when the
    account document is deleted and made anew, and at least one more than the
    last, so that auth processes whose clocks disagree still number in order.
    """
    return max(previous + 1, int(now.timestamp() * 1_000_000))


def password_length_problem(password: str) -> str | None:
    size = len(password.encode("utf-8"))
    if size < PASSWORD_MIN_BYTES:
        return f"Password must be at least {PASSWORD_MIN_BYTES} bytes."
    if size > PASSWORD_MAX_BYTES:
        return f"Password must be at most {PASSWORD_MAX_BYTES} bytes (UTF-8)."
    return None


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None: length, the common-password list, then patterns."""
    problem = password_length_problem(password)
    if problem is None and is_common(password):
        problem = "This password is too common; choose one that is harder to guess."
    if problem is None and is_repeated_or_sequential(password):
        problem = (
            "This password is a repeated or sequential pattern (like 'aaaaaaaa', '12345678', 'abcdefgh' "
            "or 'qwertyui'); choose one that is harder to guess."
        )
    return problem


def name_problem(name: str) -> str | None:
    """The name is kept and shown back to its owner: no control or bidirectional characters, no links."""
    if any(char in BIDI_CONTROLS or unicodedata.category(char) in LAYOUT_CATEGORIES for char in name):
        return "Name may not contain control characters or bidirectional-text controls."
    if "://" in name:
        return "Name may not contain links."
    return None
