"""The sign-in challenge: what a password login with the second factor on answers instead of tokens. Pure."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

CHALLENGE_MAX_LENGTH = 128


@dataclass(frozen=True)
class SignInChallenge:
    """One login attempt waiting for its emailed code, stored under the challenge's hash only.

    ``sequence`` is the sign-in code request's: only the code mailed for this attempt
    completes it. ``device`` is the ``device_key`` of the login that asked for it.
    """

    challenge_hash: str
    user_id: str
    email: str
    device: str
    sequence: int
    expires_at: datetime


def new_challenge() -> str:
    return secrets.token_urlsafe(32)


def challenge_hash(challenge: str) -> str:
    return hashlib.sha256(challenge.encode("utf-8", "replace")).hexdigest()
