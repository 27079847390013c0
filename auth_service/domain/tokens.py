"""Access tokens: HS256 JWTs with every claim required and the algorithm pinned.

Besides the registered claims a token carries ``ver``, the account's token
version when it was issued: a password change or reset raises the version,
and every token stamped with an older one is refused from then on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
LEEWAY_SECONDS = 10


VERSION_CLAIM = "ver"


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class AccessClaims:
    subject: str
    token_version: int


class TokenIssuer:
    def __init__(
        self, secret: str, ttl_seconds: int, issuer: str, audience: str, clock: Callable[[], float] = time.time
    ):
        self._secret = secret
        self._ttl = ttl_seconds
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    def issue(self, subject: str, token_version: int) -> tuple[str, int]:
        now = int(self._clock())
        claims = {
            "sub": subject,
            "iat": now,
            "exp": now + self._ttl,
            "iss": self._issuer,
            "aud": self._audience,
            VERSION_CLAIM: token_version,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl

    def verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud", VERSION_CLAIM]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(type(error).__name__) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("bad subject")
        version = claims[VERSION_CLAIM]
        # bool is an int to Python; a JSON true is no version.
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise InvalidToken("bad token version")
        return AccessClaims(subject, version)
