"""Accounts and their rules. Pure Python, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from auth_service.domain.common_passwords import is_common

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
    # Stamped in every access and refresh token; raising it refuses all of them (password change, reset).
    token_version: int = 0

    @property
    def verified(self) -> bool:
        return self.status is Status.VERIFIED


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
