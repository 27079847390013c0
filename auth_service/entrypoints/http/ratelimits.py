"""Request limits per client IP and per address, on flask-limiter.

Counters live in ``RATELIMIT_STORAGE_URI`` (Redis in production, ``memory://``
in tests) under their own key prefix. A limit is checked before the body is
validated, so malformed requests count too.

When the counter store fails, the limiter keeps counting in this process's
memory and logs a warning, and goes back to the store once it answers again
(flask-limiter's in-memory fallback). Neither failing open (no limits while
Redis is down, which an attacker could provoke) nor failing closed (a 503 on
every login while Redis is down) is needed: each process still enforces the
limits on its own share of the traffic. docs/security.md has the reasoning.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import HTTPException

from auth_service.config import Settings
from auth_service.domain.accounts import EMAIL_MAX_LENGTH, normalize_email
from auth_service.entrypoints.http import errors

log = logging.getLogger(__name__)

STORE_TIMEOUT_SECONDS = 1


def client_ip() -> str:
    """The peer address, or the proxy-reported one when ProxyFix trusts PROXY_HOPS proxies."""
    return request.remote_addr or "unknown"


def _address_in_body() -> str | None:
    try:
        body = request.get_json(silent=True)
    except HTTPException:  # too large: refused before any limit is consulted
        return None
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or not email.strip() or len(email) > EMAIL_MAX_LENGTH:
        return None
    return normalize_email(email)


def address_key() -> str:
    # Hashed so that the counter keys do not spell out addresses.
    address = _address_in_body() or ""
    return hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()


def no_address() -> bool:
    """Requests without a usable address are left to the per-IP limit (and refused by validation)."""
    return _address_in_body() is None


def login_failed(response) -> bool:
    return response.status_code == 401


def install(app: Flask, settings: Settings) -> Limiter:
    storage_uri = settings.ratelimit_storage_uri
    storage_options = {} if storage_uri.startswith("memory://") else _redis_options()
    limiter = Limiter(
        client_ip,
        storage_uri=storage_uri,
        storage_options=storage_options,
        # Sliding windows: "50/day" means at most 50 in any 24 hours, not 100 across midnight.
        strategy="moving-window",
        key_prefix=settings.ratelimit_key_prefix,
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        enabled=settings.ratelimit_enabled,
    )
    limiter.init_app(app)
    if not settings.ratelimit_enabled:
        return limiter

    per_endpoint = {
        "auth.register": [
            limiter.limit(settings.ratelimit_register_per_ip),
            limiter.limit(settings.ratelimit_register_per_address, key_func=address_key, exempt_when=no_address),
        ],
        "auth.confirm": [
            limiter.limit(settings.ratelimit_confirm_per_ip),
            limiter.limit(settings.ratelimit_confirm_per_address, key_func=address_key, exempt_when=no_address),
        ],
        "auth.resend_code": [
            limiter.limit(settings.ratelimit_resend_per_ip),
            limiter.limit(settings.ratelimit_resend_per_address, key_func=address_key, exempt_when=no_address),
        ],
        "auth.login": [
            limiter.limit(settings.ratelimit_login_per_ip),
            # Only failures count against an address, as NIST SP 800-63B 5.2.2 asks.
            limiter.limit(
                settings.ratelimit_login_failures_per_address,
                key_func=address_key,
                exempt_when=no_address,
                deduct_when=login_failed,
            ),
        ],
    }
    for endpoint, decorators in per_endpoint.items():
        view = app.view_functions[endpoint]
        for decorate in decorators:
            view = decorate(view)
        app.view_functions[endpoint] = view

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded):
        return errors.error_response(
            429,
            "rate_limited",
            "Too many requests. Try again later.",
            {"Retry-After": str(_seconds_until_reset(limiter, error))},
        )

    return limiter


def _seconds_until_reset(limiter: Limiter, error: RateLimitExceeded) -> int:
    try:
        breached = limiter.current_limit
        if breached is not None:
            return max(1, math.ceil(breached.window[0] - time.time()))
    except Exception:  # the store went away in between; the window length is a safe answer
        log.warning("could not read the rate-limit window, answering with its full length")
    return max(1, error.limit.limit.get_expiry())


def _redis_options() -> dict:
    return {"socket_timeout": STORE_TIMEOUT_SECONDS, "socket_connect_timeout": STORE_TIMEOUT_SECONDS}
