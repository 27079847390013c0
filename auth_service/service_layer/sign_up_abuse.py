"""The checks against sign-up abuse, made before a request costs anything: a CAPTCHA on the endpoints
that send mail, breached passwords on those that set one, disposable domains on those that take an address.

None of them looks at an account: a refusal says the same whether or not the address has one.
"""

from __future__ import annotations

import logging

from auth_service.domain.abuse import (
    BREACH_CHECK_UNAVAILABLE_MESSAGE,
    BREACHED_MESSAGE,
    DISPOSABLE_MESSAGE,
    DisposableDomains,
    PasswordDigest,
    Refusal,
)
from auth_service.domain.errors import CaptchaInvalid, CaptchaRequired, FieldRefused, ServiceUnavailable
from auth_service.ports import AbuseObserver, CaptchaVerifier, CheckUnavailable, PasswordRanges

log = logging.getLogger(__name__)

CAPTCHA_UNAVAILABLE_MESSAGE = "The CAPTCHA could not be checked just now. Try again shortly."


class AbuseChecks:
    def __init__(
        self,
        observer: AbuseObserver,
        *,
        captcha: CaptchaVerifier | None = None,
        password_ranges: PasswordRanges | None = None,
        breach_check_fails_closed: bool = False,
        disposable: DisposableDomains | None = None,
    ):
        self._observer = observer
        self._captcha = captcha
        self._ranges = password_ranges
        self._fails_closed = breach_check_fails_closed
        self._disposable = disposable

    @classmethod
    def none(cls) -> AbuseChecks:
        """No check at all: a service with none of the sign-up abuse settings."""
        return cls(_Unobserved())

    @property
    def captcha_on(self) -> bool:
        return self._captcha is not None

    def check_captcha(self, token: str | None, remote_ip: str | None) -> None:
        """A CAPTCHA that cannot be checked is not passed: the provider down is a 503, never a way in."""
        if self._captcha is None:
            return
        if not token:
            self._refuse(Refusal.CAPTCHA_REQUIRED)
            raise CaptchaRequired()
        try:
            passed = self._captcha.verify(token, remote_ip)
        except CheckUnavailable as unavailable:
            log.warning("captcha provider unavailable", extra={"reason": unavailable.reason})
            self._refuse(Refusal.CAPTCHA_UNAVAILABLE)
            raise ServiceUnavailable(CAPTCHA_UNAVAILABLE_MESSAGE) from None
        if not passed:
            self._refuse(Refusal.CAPTCHA_INVALID)
            raise CaptchaInvalid()

    def check_new_password(self, password: str, field: str) -> None:
        """Refuse a password the breach corpus holds. An API that does not answer is skipped and counted
        (failing open), unless the operator chose to fail closed."""
        if self._ranges is None:
            return
        digest = PasswordDigest.of(password)
        try:
            breached = self._ranges.breached(digest.prefix).contains(digest)
        except CheckUnavailable as unavailable:
            if self._fails_closed:
                self._refuse(Refusal.BREACH_CHECK_UNAVAILABLE)
                raise ServiceUnavailable(BREACH_CHECK_UNAVAILABLE_MESSAGE) from None
            self._observer.unchecked("pwned_passwords", unavailable.reason)
            log.warning("breached-password check skipped", extra={"reason": unavailable.reason})
            return
        if breached:
            self._refuse(Refusal.BREACHED_PASSWORD)
            raise FieldRefused(field, BREACHED_MESSAGE)

    def check_new_address(self, email: str, field: str) -> None:
        if self._disposable is not None and self._disposable.refuses(email):
            self._refuse(Refusal.DISPOSABLE_ADDRESS)
            raise FieldRefused(field, DISPOSABLE_MESSAGE)

    def _refuse(self, reason: Refusal) -> None:
        self._observer.refused(reason)
        log.info("request refused", extra={"reason": reason.value})


class _Unobserved:
    def refused(self, reason: Refusal) -> None:
        pass

    def unchecked(self, check: str, reason: str) -> None:
        pass
