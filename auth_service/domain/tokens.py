"""Access tokens: JWTs with every claim required and the algorithm pinned per key.

The header names the key (``kid``) and its algorithm (``alg``); the verifier
looks the key up by ``kid`` and accepts only that key's own algorithm, so no
token picks how it is checked (``alg: none``, HS256 keyed with a public key).

Besides the registered claims a token carries ``sid``, the session it belongs
to, and ``ver``, the account's token version when it was issued: a password
change or reset raises the version, and every token stamped with an older one
is refused from then on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from auth_service.domain.signing_keys import KeySet

LEEWAY_SECONDS = 10

VERSION_CLAIM = "ver"
SESSION_CLAIM = "sid"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti", SESSION_CLAIM, VERSION_CLAIM]


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class AccessClaims:
    subject: str
    token_version: int
    session_id: str
    issued_at: int
    expires_at: int


class TokenIssuer:
    """Signs with the key set's signing key and verifies against its published keys. ``keys`` is
    read on every call: a rotation needs no new issuer."""

    def __init__(
        self,
        keys: Callable[[], KeySet],
        ttl_seconds: int,
        issuer: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ):
        self._keys = keys
        self._ttl = ttl_seconds
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    def issue(
        self, subject: str, token_version: int, session_id: str, not_after: float | None = None
    ) -> tuple[str, int]:
        """A token and its lifetime in seconds; ``not_after`` (the session's end) shortens it."""
        now = int(self._clock())
        expires = now + self._ttl
        if not_after is not None:
            expires = min(expires, int(not_after))
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            SESSION_CLAIM: session_id,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(12),
            VERSION_CLAIM: token_version,
        }
        key = self._keys().signing
        token = jwt.encode(claims, key.signer, algorithm=key.alg, headers={"kid": key.kid})
        return token, max(0, expires - now)

    def verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken(type(error).__name__) from None
        kid = header.get("kid")
        key = self._keys().verifying.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown key")
        if header.get("alg") != key.alg:
            raise InvalidToken("algorithm is not the key's")
        try:
            claims = jwt.decode(
                token,
                key.verifier,
                algorithms=[key.alg],
                audience=self._audience,
                issuer=self._issuer,
                # Times are checked below against this issuer's clock, the one it issues by.
                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(type(error).__name__) from None
        subject, session_id = claims["sub"], claims[SESSION_CLAIM]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("bad subject")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidToken("bad session id")
        version = claims[VERSION_CLAIM]
        # bool is an int to Python; a JSON true is no version.
        if not _integer(version) or version < 0:
            raise InvalidToken("bad token version")
        if not _integer(claims["iat"]) or not _integer(claims["exp"]):
            raise InvalidToken("bad times")
        if self._clock() >= claims["exp"] + LEEWAY_SECONDS:
            raise InvalidToken("expired")
        return AccessClaims(subject, version, session_id, claims["iat"], claims["exp"])


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
