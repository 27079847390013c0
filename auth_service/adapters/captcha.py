"""Server-side verification of a CAPTCHA token: Cloudflare Turnstile or hCaptcha, the same siteverify form.

POST ``secret``, ``response`` (the token) and ``remoteip`` to the provider's
siteverify URL (``CAPTCHA_VERIFY_URL`` overrides it); the JSON answer's
``success`` is the verdict. Each token is good once: spending it is the
provider's job, so a replayed token comes back refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import urlencode

import urllib3

from auth_service.adapters.pwned_passwords import bounded_answer
from auth_service.domain.abuse import CaptchaProvider, captcha_verdict
from auth_service.ports import CheckUnavailable
from common import tracing

MAX_ANSWER_BYTES = 64 * 1024


class SiteverifyCaptcha:
    def __init__(
        self,
        provider: CaptchaProvider,
        secret: str,
        verify_url: str | None,
        timeout_seconds: float,
        on_verified: Callable[[str, float], object] = lambda outcome, seconds: None,
    ):
        self._provider = provider
        self._secret = secret
        self._url = verify_url or provider.verify_url
        self._timeout = urllib3.Timeout(total=timeout_seconds)
        self._http = urllib3.PoolManager(maxsize=8, block=False, retries=False)
        self._on_verified = on_verified

    def verify(self, token: str, remote_ip: str | None) -> bool:
        started = time.perf_counter()
        outcome = "unavailable"
        try:
            with tracing.client_span("captcha verify", **{"captcha.provider": self._provider.value}):
                verdict = captcha_verdict(self._ask(token, remote_ip))
            if verdict is None:
                raise CheckUnavailable("error")
            outcome = "success" if verdict else "failure"
            return verdict
        finally:
            self._on_verified(outcome, time.perf_counter() - started)

    def _ask(self, token: str, remote_ip: str | None) -> object:
        fields = {"secret": self._secret, "response": token}
        if remote_ip:
            fields["remoteip"] = remote_ip
        body = bounded_answer(
            self._http,
            "POST",
            self._url,
            MAX_ANSWER_BYTES,
            timeout=self._timeout,
            body=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            return json.loads(body)
        except ValueError:
            raise CheckUnavailable("error") from None
