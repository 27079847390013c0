"""Accounts and their rules. Pure Python, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from auth_service.domain.common_passwords import is_common
from common.messaging.messages import Purpose

PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = 72  # bcrypt ignores everything past 72 bytes
EMAIL_MAX_LENGTH = 254
NAME_MAX_LENGTH = 100


class Status(enum.StrEnum):
    PENDING_VERIFICATION = "pending_verification"
    VERIFIED = "verified"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str | None
    password_hash: str
    status: Status
    created_at: datetime
    # The address an email change waits to confirm with its code, if one was asked for.
    pending_email: str | None = None
    # Stamped in every access and refresh token; raising it refuses all of them (password change, reset).
    token_version: int = 0

    @property
    def verified(self) -> bool:
        return self.status is Status.VERIFIED


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


def normalize_email(email: str) -> str:
    return email.strip().lower()


def password_length_problem(password: str) -> str | None:
    size = len(password.encode("utf-8"))
    if size < PASSWORD_MIN_BYTES:
        return f"Password must be at least {PASSWORD_MIN_BYTES} bytes."
    if size > PASSWORD_MAX_BYTES:
        return f"Password must be at most {PASSWORD_MAX_BYTES} bytes (UTF-8)."
    return None


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None: the length rule, then the common-password list."""
    problem = password_length_problem(password)
    if problem is None and is_common(password):
        problem = "This password is too common; choose one that is harder to guess."
    return problem
