"""The admin console's session: what its cookie holds, sealed with AES-256-GCM. Pure Python, no I/O.

The cookie is the only state: replicas that share JWT_SECRET share sessions,
and nothing is stored server-side. Its value is sealed (encrypted and
authenticated), so the admin key inside is never in the clear in the browser,
in a proxy's log or in a cookie jar, and a cookie that was altered, or sealed
by another secret, does not open. The sealing key is derived from JWT_SECRET
with HKDF-SHA256 under a label of its own (as the stored signing keys are,
sealed_keys.py), so it is never the secret itself.

The key is kept, not just its id, so every page checks it exactly as the
admin API checks a Bearer key: a revoked key ends its console sessions at
their next request. The CSRF token is random per session and sealed with it:
a form's token must equal the one the cookie opens to. A session lasts at most
``SESSION_HOURS`` whatever the browser does with its cookie.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HKDF_INFO = b"auth-service admin console sessions v1"
HKDF_SALT = b"auth-service admin console cookie sealing"
ASSOCIATED_DATA = b"admin-console-session"
NONCE_BYTES = 12
FORMAT = "v1"
CSRF_BYTES = 32
# A support shift: a console left open overnight asks for the key again.
SESSION_HOURS = 12
# A sign-in form left open longer than this asks to be reloaded.
SIGN_IN_FORM_MINUTES = 60
# Far above a sealed key and token; a longer cookie is refused before it is opened.
MAX_SEALED_LENGTH = 1024


@dataclass(frozen=True)
class ConsoleSession:
    """``key`` is None before sign-in: the sign-in form's own CSRF token is all the session holds then."""

    csrf: str
    expires_at: datetime
    key: str | None = None

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and presented != "" and hmac.compare_digest(presented.encode(), self.csrf.encode())


def signed_out(now: datetime) -> ConsoleSession:
    return ConsoleSession(secrets.token_urlsafe(CSRF_BYTES), now + timedelta(minutes=SIGN_IN_FORM_MINUTES))


def signed_in(key: str, now: datetime) -> ConsoleSession:
    # A new CSRF token at sign-in: one seen before it (on the sign-in form) is worth nothing after.
    return ConsoleSession(secrets.token_urlsafe(CSRF_BYTES), now + timedelta(hours=SESSION_HOURS), key)


class SessionSealer:
    def __init__(self, secret: str):
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(secret.encode())
        self._aead = AESGCM(derived)

    def seal(self, session: ConsoleSession) -> str:
        payload = {"c": session.csrf, "e": int(session.expires_at.timestamp())}
        if session.key is not None:
            payload["k"] = session.key
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(payload).encode(), ASSOCIATED_DATA)
        return f"{FORMAT}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, sealed: str | None, now: datetime) -> ConsoleSession | None:
        """The session of a cookie's value; None for no cookie, an altered or foreign one, or an expired one."""
        if not sealed or len(sealed) > MAX_SEALED_LENGTH:
            return None
        version, _, payload = sealed.partition(".")
        if version != FORMAT:
            return None
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            opened = json.loads(self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], ASSOCIATED_DATA))
            session = ConsoleSession(
                csrf=_text(opened["c"]),
                expires_at=datetime.fromtimestamp(int(opened["e"]), UTC),
                key=_text(opened["k"]) if "k" in opened else None,
            )
        except (InvalidTag, ValueError, TypeError, KeyError, OverflowError):
            return None
        return session if session.valid_at(now) else None


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("not a text field")
    return value
