"""Codes asked for by address alone (resend, forgot): answered before the address is looked up.

A request for a code by address must answer alike, and after the same work,
for every address, or its timing tells which addresses have an account
(docs/security.md, "Resend timing"). So the request only runs the cooldown, stores
what was asked (one insert) and wakes the relay thread; the relay looks the
address up and hands the stored request to what its purpose registered here,
which mails a code or does nothing. Resend and forgot share this; they differ
only in whom they mail a code to.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from auth_service.domain.accounts import normalize_email
from auth_service.ports import ResendRequest, ResendRequests
from auth_service.service_layer.codes import CodeClient
from common.messaging.messages import Purpose

log = logging.getLogger(__name__)

Act = Callable[[ResendRequest], None]


class CodeAsks:
    def __init__(
        self,
        codes: CodeClient,
        requests: ResendRequests,
        clock: Callable[[], float] = time.time,
        asked: Callable[[], object] = lambda: None,
    ):
        self._codes = codes
        self._requests = requests
        self._clock = clock
        # Wakes whatever acts on stored requests (the relay thread).
        self._asked = asked
        self._acts: dict[Purpose, Act] = {}

    def on(self, purpose: Purpose, act: Act) -> None:
        """Register what the relay does with a stored request of ``purpose``."""
        self._acts[purpose] = act

    def wake_with(self, asked: Callable[[], object]) -> None:
        """Set what a stored request wakes (the relay thread, or in unit tests ``process`` itself)."""
        self._asked = asked

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def ask(self, purpose: Purpose, email: str, request_id: str | None = None, *, by_support: bool = False) -> None:
        """Throttle, store the request, wake the relay: the same work whatever the address."""
        email = normalize_email(email)
        self._codes.throttle(purpose, email, by_support=by_support)
        self._requests.add(
            ResendRequest(
                id=secrets.token_hex(16), email=email, requested_at=self._now(), request_id=request_id, purpose=purpose
            )
        )
        self._asked()

    def process(self, lease_seconds: float = 30.0) -> int:
        """Act on stored requests (the relay thread); returns how many were handled."""
        handled = 0
        while True:
            now = self._now()
            request = self._requests.claim(now, lease_until=now + timedelta(seconds=lease_seconds))
            if request is None:
                return handled
            act = self._acts.get(request.purpose)
            if act is None:
                log.warning("stored code request of an unknown purpose dropped", extra={"purpose": request.purpose})
            else:
                act(request)
            self._requests.done(request.id)
            handled += 1
