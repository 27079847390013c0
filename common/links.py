"""The token of a verification link, as the worker writes it and auth reads it.

The link must let ``POST /auth/verify`` find the code from the token alone,
without putting the address in the URL (links end up in browser histories,
proxy logs and mail scanners). So the token is ``<account id>.<link token>``:
the account id (opaque, random) tells auth whose code it is, and the link token
(43 URL-safe characters derived from the code request, never the code) is the
secret the worker checks against the digest it stored.
"""

from __future__ import annotations

import hashlib
import re

SEPARATOR = "."
_ACCOUNT_ID = r"[A-Za-z0-9_-]{1,64}"
_LINK_TOKEN = r"[A-Za-z0-9_-]{20,128}"  # noqa: S105 (a pattern, not a secret)
_REFERENCE = re.compile(rf"\A({_ACCOUNT_ID})\.({_LINK_TOKEN})\Z")
REFERENCE_MAX_LENGTH = 64 + 1 + 128


def link_token_reference(account_id: str, link_token: str) -> str:
    return f"{account_id}{SEPARATOR}{link_token}"


# The worker names the message that tells auth a restore link's digest after the deletion notice's message id.
RESTORE_ISSUED_PREFIX = "restore-"


def link_token_digest(token: str) -> str:
    """What auth keeps of a one-time link's token the worker minted ("this wasn't me", restore): its SHA-256.
    Auth never holds the key the token is derived under, so the digest is all it can check a press against."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_link_token_reference(reference: str | None) -> tuple[str, str] | None:
    """(account id, link token), or None for anything that is no token of ours."""
    if not isinstance(reference, str) or len(reference) > REFERENCE_MAX_LENGTH:
        return None
    match = _REFERENCE.match(reference)
    return (match.group(1), match.group(2)) if match else None
