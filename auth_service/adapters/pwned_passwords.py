"""The Pwned Passwords range API (k-anonymity): ``GET {PWNED_PASSWORDS_URL}/range/{five hex digits}``.

Only the SHA-1's first five hex digits leave the process; the suffix is looked for
locally (domain/abuse.py). ``Add-Padding: true`` makes every answer about the
same size, so that an observer of the encrypted traffic cannot tell the prefix
by the answer's length. Answers are kept per prefix for a day, in a cache of a
bounded number of ranges (about 18 bytes a breached suffix: some 16 KB a range).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import urllib3

from auth_service.domain.abuse import PREFIX_LENGTH, PasswordRange
from auth_service.ports import CheckUnavailable
from common import tracing

CACHE_SECONDS = 24 * 3600
# A range is some 40 KB of text with padding; anything past this is not a range API answering.
MAX_ANSWER_BYTES = 1024 * 1024
USER_AGENT = "email-verification-auth"


class PwnedPasswordsClient:
    def __init__(
        self,
        base_url: str,
        timeout_seconds: float,
        cache_ranges: int,
        clock: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[str], object] = lambda source: None,
    ):
        self._base_url = base_url.rstrip("/")
        self._timeout = urllib3.Timeout(total=timeout_seconds)
        # A pool shared by the request threads (urllib3's is thread-safe); keep-alive spares a TLS
        # handshake per check.
        self._http = urllib3.PoolManager(maxsize=8, block=False, retries=False)
        self._cache = RangeCache(cache_ranges, CACHE_SECONDS, clock)
        self._on_lookup = on_lookup

    def breached(self, prefix: str) -> PasswordRange:
        if len(prefix) != PREFIX_LENGTH:
            raise ValueError("a range is asked for by five hex digits")
        cached = self._cache.get(prefix)
        if cached is not None:
            self._on_lookup("cache")
            return cached
        # The span names the call, never the prefix: with the suffix kept apart, nothing of the password is in it.
        with tracing.client_span("pwned passwords range"):
            try:
                found = PasswordRange.parse(self._fetch(prefix))
            except CheckUnavailable:
                self._on_lookup("failed")
                raise
        self._cache.put(prefix, found)
        self._on_lookup("api")
        return found

    def _fetch(self, prefix: str) -> str:
        body = bounded_answer(
            self._http,
            "GET",
            f"{self._base_url}/range/{prefix}",
            MAX_ANSWER_BYTES,
            timeout=self._timeout,
            headers={"Add-Padding": "true", "User-Agent": USER_AGENT},
        )
        return body.decode("ascii", errors="replace")


class RangeCache:
    """Ranges by prefix, each for ``ttl`` seconds, the least recently used dropped past ``capacity``."""

    def __init__(self, capacity: int, ttl: float, clock: Callable[[], float]):
        self._capacity = capacity
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, PasswordRange]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, prefix: str) -> PasswordRange | None:
        with self._lock:
            entry = self._entries.get(prefix)
            if entry is None:
                return None
            expires, found = entry
            if expires <= self._clock():
                del self._entries[prefix]
                return None
            self._entries.move_to_end(prefix)
            return found

    def put(self, prefix: str, found: PasswordRange) -> None:
        if self._capacity <= 0:
            return
        with self._lock:
            self._entries[prefix] = (self._clock() + self._ttl, found)
            self._entries.move_to_end(prefix)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def bounded_answer(
    http: urllib3.PoolManager,
    method: str,
    url: str,
    max_bytes: int,
    *,
    timeout: urllib3.Timeout,
    headers: dict[str, str],
    body: str | None = None,
) -> bytes:
    """The body of a 200 answer of at most ``max_bytes``, no redirect followed; anything else, or a call
    that fails, is ``CheckUnavailable`` with the metric label of why."""
    try:
        response = http.request(
            method, url, body=body, headers=headers, timeout=timeout, preload_content=False, redirect=False
        )
        try:
            answer = response.read(max_bytes + 1)
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as error:
        raise CheckUnavailable(failure_reason(error)) from None
    if response.status != 200 or len(answer) > max_bytes:
        raise CheckUnavailable("error")
    return answer


def failure_reason(error: urllib3.exceptions.HTTPError) -> str:
    """The metric label of a call that failed: "timeout", or "error" for a refused connection and the rest.
    (urllib3 makes a refused connection a kind of connect timeout: it is told apart first.)"""
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return "error"
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return "timeout"
    return "error"
