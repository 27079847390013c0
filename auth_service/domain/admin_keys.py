"""Admin keys and their scopes. Pure rules, no I/O.

A key is ``ak_<id>_<secret>``: the id (16 hex digits) finds the key's line, the
secret (256 random bits) proves it. Only the SHA-256 of the secret is kept: a
key is a random 256-bit value, not a password, so a fast hash cannot be
guessed back, and the check costs nothing per request (GitHub's and Stripe's
API keys are kept the same way). The digest is compared in constant time.

The keys file holds one line per key, fields separated by a tab:
``name  scopes  sha256$<id>$<digest>  created``; ``#`` starts a comment.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

USERS_READ = "users:read"
USERS_WRITE = "users:write"
SESSIONS_WRITE = "sessions:write"
INTROSPECT = "introspect"
WEBHOOKS_WRITE = "webhooks:write"
AUDIT_READ = "audit:read"
SCOPES = (USERS_READ, USERS_WRITE, SESSIONS_WRITE, INTROSPECT, WEBHOOKS_WRITE, AUDIT_READ)

KEY_PREFIX = "ak"
KEY_ID_HEX_DIGITS = 16
SECRET_BYTES = 32  # 256 bits
HASH_SCHEME = "sha256"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# The whole presented key: the id, then the secret in base64url (43 characters for 32 bytes).
KEY_PATTERN = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{{KEY_ID_HEX_DIGITS}}})_([A-Za-z0-9_-]{{43}})")
FIELD_SEPARATOR = "\t"


class BadKeyLine(ValueError):
    """A line of the keys file that is not ``name, scopes, hash, created``."""


@dataclass(frozen=True)
class AdminKey:
    """One key as the file keeps it: never the key itself, only its id and the digest of its secret."""

    name: str
    scopes: frozenset[str]
    key_id: str
    digest: str
    created_at: datetime

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(secret_digest(secret), self.digest)


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``key`` is shown once, ``record`` is what the file keeps."""

    key: str
    record: AdminKey


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


def new_key(name: str, scopes: Iterable[str], now: datetime) -> NewKey:
    checked_name = check_name(name)
    checked_scopes = check_scopes(scopes)
    key_id = secrets.token_hex(KEY_ID_HEX_DIGITS // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    record = AdminKey(checked_name, checked_scopes, key_id, secret_digest(secret), now.astimezone(UTC))
    return NewKey(f"{KEY_PREFIX}_{key_id}_{secret}", record)


def parse_presented(presented: str | None) -> tuple[str, str] | None:
    """(id, secret) of something presented as a key, or None for anything that is no key of this form."""
    if not presented:
        return None
    found = KEY_PATTERN.fullmatch(presented.strip())
    return (found.group(1), found.group(2)) if found else None


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError("a key's name is 1 to 64 letters, digits or . _ @ -, starting with a letter or digit")
    return name


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(scope.strip() for scope in scopes if scope.strip())
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {', '.join(unknown)}; the scopes are {', '.join(SCOPES)}")
    if not chosen:
        raise ValueError(f"a key needs at least one scope of {', '.join(SCOPES)}")
    return chosen


def format_line(key: AdminKey) -> str:
    return FIELD_SEPARATOR.join(
        [
            key.name,
            ",".join(scope for scope in SCOPES if scope in key.scopes),
            f"{HASH_SCHEME}${key.key_id}${key.digest}",
            key.created_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        ]
    )


def parse_line(line: str) -> AdminKey | None:
    """The key of one line; None for a blank line or a comment; ``BadKeyLine`` for anything else."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split(FIELD_SEPARATOR)
    if len(fields) != 4:
        raise BadKeyLine("a key's line has four tab-separated fields: name, scopes, hash, created")
    name, scopes, hashed, created = (field.strip() for field in fields)
    scheme, _, rest = hashed.partition("$")
    key_id, _, digest = rest.partition("$")
    if scheme != HASH_SCHEME or not re.fullmatch(r"[0-9a-f]{16}", key_id) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise BadKeyLine(f"the hash field is {HASH_SCHEME}$<16 hex digits>$<64 hex digits>")
    try:
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
        return AdminKey(check_name(name), check_scopes(scopes.split(",")), key_id, digest, created_at)
    except ValueError as error:
        raise BadKeyLine(str(error)) from None
