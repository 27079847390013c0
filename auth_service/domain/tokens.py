"""Access tokens: HS256 JWTs with every claim required and the algorithm pinned."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt

ALGORITHM = "HS256"
LEEWAY_SECONDS = 10


class InvalidToken(Exception):
    pass


class TokenIssuer:
    def __init__(
        self, secret: str, ttl_seconds: int, issuer: str, audience: str, clock: Callable[[], float] = time.time
    ):
        self._secret = secret
        self._ttl = ttl_seconds
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    def issue(self, subject: str) -> tuple[str, int]:
        now = int(self._clock())
        claims = {"sub": subject, "iat": now, "exp": now + self._ttl, "iss": self._issuer, "aud": self._audience}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl

    def subject(self, token: str) -> str:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(type(error).__name__) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("bad subject")
        return subject
