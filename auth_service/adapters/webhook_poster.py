"""The dispatcher's HTTP client, built at its first delivery attempt.

The API process runs a webhook dispatcher by default (``WEBHOOK_DISPATCHER``), and most deployments
never create an endpoint: building the client only when an attempt comes keeps urllib3 out of their
memory (docs/decisions/lazy-http-clients.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from auth_service.domain.webhooks import AttemptResult
from auth_service.ports import WebhookPoster


class PosterOnFirstUse:
    """A ``WebhookPoster`` that builds the real one (``build``) when the first attempt posts, once."""

    def __init__(self, build: Callable[[], WebhookPoster]):
        self._build = build
        self._poster: WebhookPoster | None = None
        self._lock = threading.Lock()

    def _built(self) -> WebhookPoster:
        poster = self._poster
        if poster is None:
            with self._lock:  # the endpoints' lanes attempt in parallel: one client for all of them
                if self._poster is None:
                    self._poster = self._build()
                poster = self._poster
        return poster

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float) -> AttemptResult:
        return self._built().post(url, body, headers, timeout_seconds)
