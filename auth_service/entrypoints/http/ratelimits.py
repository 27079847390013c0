"""Request limits per client IP and per address, on flask-limiter.

Counters live in ``RATELIMIT_STORAGE_URI`` (Redis in production, ``memory://``
in tests) under their own key prefix. A limit is checked before the body is
validated, so malformed requests count too.

When the counter store fails, the limiter keeps counting in this process's
memory and logs a warning, and goes back to the store once it answers again
(flask-limiter's in-memory fallback). Neither failing open (no limits while
Redis is down, which an attacker could provoke) nor failing closed (a 503 on
every login while Redis is down) is needed: each process still enforces the
limits on its own share of the traffic. A store that is slow rather than down
is treated alike: its calls time out after ``RATELIMIT_STORE_TIMEOUT_SECONDS``.
docs/security.md has the reasoning.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import limits
import marshmallow
from flask import Flask, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import HTTPException

from auth_service.config import Settings
from auth_service.domain.accounts import normalize_email
from auth_service.domain.challenges import CHALLENGE_MAX_LENGTH
from auth_service.entrypoints.http import errors, routes, schemas
from common.links import parse_link_token_reference

log = logging.getLogger(__name__)

# The field every limited endpoint reads the address with: what it accepts, trimmed, is what gets counted.
ADDRESS_FIELD = schemas.ResendRequest().fields["email"]
REFRESH_TOKEN_MAX_LENGTH = 512  # as the schema: a longer one is no token of ours
LOGIN_FAILURES_SCOPE = "login-failures"


def client_ip() -> str:
    """The peer address; behind PROXY_HOPS proxies, waitress has already put the forwarded client there."""
    return request.remote_addr or "unknown"


def _body_field(field: str):
    try:
        body = request.get_json(silent=True)
    except HTTPException:  # too large: refused before any limit is consulted
        return None
    return body.get(field) if isinstance(body, dict) else None


def _string_in_body(field: str, max_length: int) -> str | None:
    value = _body_field(field)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        return None
    return value


def _address_in_body() -> str | None:
    """The address as the use case will see it, or None if the schema will refuse the request anyway.

    Derived through the schema's own field, so that any form the schema lets
    through (padded, upper case) meets the counter of the address it becomes.
    """
    if "ratelimit_address" not in g:
        g.ratelimit_address = _parse_address()
    return g.ratelimit_address


def _parse_address(field: str = "email") -> str | None:
    try:
        return normalize_email(ADDRESS_FIELD.deserialize(_body_field(field)))
    except marshmallow.ValidationError:
        return None


def _hashed(value: str) -> str:
    # Hashed so that the counter keys spell out no address, token or account.
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def address_key() -> str:
    return _hashed(_address_in_body() or "")


def no_address() -> bool:
    """Requests without a usable address are left to the per-IP limit (and refused by validation)."""
    return _address_in_body() is None


def address_and_ip_key() -> str:
    """One client's guesses at one address: an attacker's spend neither the owner's nor another IP's."""
    return _hashed(f"{_address_in_body() or ''}|{client_ip()}")


def _known_device() -> bool:
    """Is this request's device one the address's account has signed in from? One indexed read."""
    if "ratelimit_known_device" not in g:
        address = _address_in_body()
        passwords = current_app.extensions["auth_service"].passwords
        g.ratelimit_known_device = address is not None and passwords.knows_device(address, routes.request_device())
    return g.ratelimit_known_device


def address_and_device_key() -> str:
    return _hashed(f"{_address_in_body() or ''}|{routes.request_device().key}")


def known_device_or_no_address() -> bool:
    """Exempt from the per-address failure limit: no address (the IP limit), or a proven device."""
    return no_address() or _known_device()


def unknown_device_or_no_address() -> bool:
    """Exempt from the per-(address, device) failure limit: every request but a proven device's."""
    return no_address() or not _known_device()


def _new_address_in_body() -> str | None:
    if "ratelimit_new_address" not in g:
        g.ratelimit_new_address = _parse_address("new_email")
    return g.ratelimit_new_address


def new_address_key() -> str:
    return _hashed(_new_address_in_body() or "")


def no_new_address() -> bool:
    return _new_address_in_body() is None


def _link_account() -> str | None:
    """The account a verification or "this wasn't me" link names (query or form ``token``)."""
    reference = parse_link_token_reference(request.values.get("token"))
    return reference[0] if reference is not None else None


def link_account_key() -> str:
    """Per (account, IP), never per account alone: the account id is no secret (the 201 of a registration,
    ``/auth/me`` with a stolen session), and junk tokens carrying it must not switch its owner's links off."""
    return _hashed(f"{_link_account() or ''} {client_ip()}")


def no_link_account() -> bool:
    return _link_account() is None


def _refresh_token_in_body() -> str | None:
    return _string_in_body("refresh_token", REFRESH_TOKEN_MAX_LENGTH)


def refresh_token_key() -> str:
    return _hashed(_refresh_token_in_body() or "")


def no_refresh_token() -> bool:
    return _refresh_token_in_body() is None


def _challenge_account() -> str | None:
    """The account a sign-in challenge belongs to: guesses at its code count against that account."""
    if "ratelimit_challenge_account" not in g:
        challenge = _string_in_body("challenge", CHALLENGE_MAX_LENGTH)
        sign_in = current_app.extensions["auth_service"].sign_in
        g.ratelimit_challenge_account = sign_in.challenge_owner(challenge) if challenge else None
    return g.ratelimit_challenge_account


def challenge_account_key() -> str:
    return _hashed(_challenge_account() or "")


def no_challenge_account() -> bool:
    return _challenge_account() is None


def _bearer_account() -> str | None:
    """The account of a well-signed Bearer token; a forged one must not spend a real account's budget."""
    token = routes.bearer_token()
    return current_app.extensions["auth_service"].sessions.token_subject(token) if token else None


def account_key() -> str:
    return _hashed(_bearer_account() or "")


def no_account() -> bool:
    return _bearer_account() is None


def login_failed(response) -> bool:
    return response.status_code == 401


# What a refused code answers (a wrong, used or burned one); a 422 or a 429 of the limits is no guess.
CODE_REFUSALS = frozenset({"invalid_code", "code_expired", "too_many_attempts"})


def code_refused(response) -> bool:
    body = response.get_json(silent=True) if response.is_json else None
    return response.status_code in (400, 410, 429) and isinstance(body, dict) and body.get("error") in CODE_REFUSALS


def accepted(response) -> bool:
    return 200 <= response.status_code < 300


def wrong_current_password(response) -> bool:
    body = response.get_json(silent=True) if response.is_json else None
    return response.status_code == 401 and isinstance(body, dict) and body.get("error") == "invalid_credentials"


def install(app: Flask, settings: Settings) -> Limiter:
    storage_uri = settings.ratelimit_storage_uri
    # flask-limiter annotates these str | int, but hands them to the Redis client as they are: timeouts are floats.
    storage_options: dict[str, Any] = {} if storage_uri.startswith("memory://") else settings.ratelimit_store_options
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

    password_failures = limiter.shared_limit(
        settings.ratelimit_password_change_failures_per_account,
        scope="password-failures",
        key_func=account_key,
        exempt_when=no_account,
        deduct_when=wrong_current_password,
    )

    account_pages = limiter.shared_limit(settings.ratelimit_account_pages_per_ip, scope="account-pages")
    # Every accepted action that mails the account's own address a notice spends one quota per account.
    notices = limiter.shared_limit(
        settings.ratelimit_notices_per_account,
        scope="account-notices",
        key_func=account_key,
        exempt_when=no_account,
        deduct_when=accepted,
    )

    def by_ip_and_address(per_ip: str, per_address: str) -> list:
        return [limiter.limit(per_ip), limiter.limit(per_address, key_func=address_key, exempt_when=no_address)]

    def guesses_by_ip_and_address(per_ip: str, per_address: str) -> list:
        # Per (address, IP), and only refused codes count: junk from one client does not spend the owner's
        # submissions from another, nor the owner's right code theirs. The bound per account is the
        # worker's (its daily guess budget): docs/security.md, "The guessing bound".
        return [
            limiter.limit(per_ip),
            limiter.limit(per_address, key_func=address_and_ip_key, exempt_when=no_address, deduct_when=code_refused),
        ]

    per_endpoint = {
        "auth.register": by_ip_and_address(settings.ratelimit_register_per_ip, settings.ratelimit_register_per_address),
        "auth.confirm": guesses_by_ip_and_address(
            settings.ratelimit_confirm_per_ip, settings.ratelimit_confirm_per_address
        ),
        "auth.resend_code": by_ip_and_address(settings.ratelimit_resend_per_ip, settings.ratelimit_resend_per_address),
        "auth.login": [
            limiter.limit(settings.ratelimit_login_per_ip),
            # Only failures count against an address, as NIST SP 800-63B 5.2.2 asks; a reset clears them.
            limiter.shared_limit(
                settings.ratelimit_login_failures_per_address,
                scope=LOGIN_FAILURES_SCOPE,
                key_func=address_key,
                exempt_when=known_device_or_no_address,
                deduct_when=login_failed,
            ),
            # A device the account signed in from has a budget of its own, which nobody else can spend.
            limiter.shared_limit(
                settings.ratelimit_login_failures_per_address,
                scope="login-failures-device",
                key_func=address_and_device_key,
                exempt_when=unknown_device_or_no_address,
                deduct_when=login_failed,
            ),
        ],
        # Refresh tokens cannot be guessed (256 bits): the per-token limit only stops one token
        # being hammered; the per-IP limit bounds the load.
        "auth.refresh_token": [
            limiter.limit(settings.ratelimit_refresh_per_ip),
            limiter.limit(
                settings.ratelimit_refresh_per_token, key_func=refresh_token_key, exempt_when=no_refresh_token
            ),
        ],
        "auth.logout": [
            limiter.limit(settings.ratelimit_logout_per_ip),
            limiter.limit(
                settings.ratelimit_logout_per_token, key_func=refresh_token_key, exempt_when=no_refresh_token
            ),
        ],
        # A stolen access token must not buy unlimited guesses at the current password: wrong
        # passwords at password change and at email change count against one budget per account.
        "auth.change_password": [limiter.limit(settings.ratelimit_password_change_per_ip), password_failures],
        "auth.forgot_password": by_ip_and_address(
            settings.ratelimit_forgot_per_ip, settings.ratelimit_forgot_per_address
        ),
        # Reset, address-change and link submissions are guesses at a code: the guessing bound.
        "auth.reset_password": guesses_by_ip_and_address(
            settings.ratelimit_reset_per_ip, settings.ratelimit_reset_per_address
        ),
        "auth.change_email": [
            limiter.limit(settings.ratelimit_email_change_per_ip),
            # Per new address: no account may have another's mailbox bombed with codes.
            limiter.limit(
                settings.ratelimit_email_change_per_address, key_func=new_address_key, exempt_when=no_new_address
            ),
            password_failures,
            notices,
        ],
        # Sign-in codes: asked for like a reset code, guessed at like any code.
        "auth.login_code": by_ip_and_address(
            settings.ratelimit_login_code_per_ip, settings.ratelimit_login_code_per_address
        ),
        "auth.login_code_verify": guesses_by_ip_and_address(
            settings.ratelimit_login_code_verify_per_ip, settings.ratelimit_login_code_verify_per_address
        ),
        "auth.login_verify": [
            limiter.limit(settings.ratelimit_login_verify_per_ip),
            limiter.limit(
                settings.ratelimit_login_verify_per_account,
                key_func=challenge_account_key,
                exempt_when=no_challenge_account,
            ),
        ],
        # Wrong passwords here spend the one budget of password and address change.
        "auth.set_mfa": [limiter.limit(settings.ratelimit_mfa_per_ip), password_failures, notices],
        "auth.confirm_email": [
            limiter.limit(settings.ratelimit_email_confirm_per_ip),
            limiter.limit(settings.ratelimit_email_confirm_per_account, key_func=account_key, exempt_when=no_account),
        ],
        # The "this wasn't me" link has the verification link's form: the same limits, counters of its own.
        "auth.not_me": [
            limiter.limit(settings.ratelimit_verify_link_per_ip, scope="not-me"),
            limiter.limit(
                settings.ratelimit_verify_link_per_account,
                key_func=link_account_key,
                exempt_when=no_link_account,
                scope="not-me-account",
            ),
        ],
        # Reading and ending the account's own sessions and activity: a Bearer token is needed, the load is bounded.
        "account.list_sessions": [account_pages],
        "account.end_other_sessions": [account_pages],
        "account.end_session": [account_pages],
        "account.activity": [account_pages],
        # A password checked with a Bearer token: its wrong guesses spend password change's budget.
        # A deletion code mails the account's own address: it spends the notices' quota too.
        "account.delete_account": [
            limiter.limit(settings.ratelimit_account_password_per_ip),
            password_failures,
            notices,
        ],
        "account.export_account": [limiter.limit(settings.ratelimit_account_password_per_ip), password_failures],
        # Guesses at a code, as at email/confirm: the guessing bound, with counters of their own.
        "account.confirm_deletion": [
            limiter.limit(settings.ratelimit_email_confirm_per_ip, scope="delete-confirm"),
            limiter.limit(
                settings.ratelimit_email_confirm_per_account,
                key_func=account_key,
                exempt_when=no_account,
                scope="delete-confirm-account",
            ),
        ],
        # The restore link has the verification link's form: the same limits, counters of its own.
        "account.restore": [
            limiter.limit(settings.ratelimit_verify_link_per_ip, scope="restore"),
            limiter.limit(
                settings.ratelimit_verify_link_per_account,
                key_func=link_account_key,
                exempt_when=no_link_account,
                scope="restore-account",
            ),
        ],
        "auth.verify_link": [
            limiter.limit(settings.ratelimit_verify_link_per_ip),
            limiter.limit(
                settings.ratelimit_verify_link_per_account, key_func=link_account_key, exempt_when=no_link_account
            ),
        ],
    }
    for endpoint, decorators in per_endpoint.items():
        view: Callable[..., Any] = app.view_functions[endpoint]
        for decorate in decorators:
            view = decorate(view)
        app.view_functions[endpoint] = view

    failures = limits.parse_many(settings.ratelimit_login_failures_per_address)
    app.extensions["auth_login_failures"] = LoginFailureCounters(limiter, failures, settings.ratelimit_key_prefix)

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded):
        return errors.error_response(
            429,
            "rate_limited",
            "Too many requests. Try again later.",
            {"Retry-After": str(_seconds_until_reset(limiter, error))},
        )

    return limiter


class LoginFailureCounters:
    """The per-address failed-login counters, as the limit above keys them; a reset forgets an address's."""

    def __init__(self, limiter: Limiter, items: list, key_prefix: str):
        self._limiter = limiter
        self._items = items
        self._key_prefix = key_prefix

    def forget(self, email: str) -> None:
        # As flask-limiter names a counter: its key prefix (when there is one), the key, the scope.
        identifiers = [part for part in (self._key_prefix, _hashed(normalize_email(email))) if part]
        # Both stores: failures counted in the in-memory fallback while Redis was slow or away are
        # read again once the process falls back the next time, and the other way round.
        stores = {
            id(store): store for store in (self._limiter.limiter, getattr(self._limiter, "_fallback_limiter", None))
        }
        for store in stores.values():
            if store is None:
                continue
            try:
                for item in self._items:
                    store.clear(item, *identifiers, LOGIN_FAILURES_SCOPE)
            except Exception:  # the store is away: the counters run out with their window, as before
                log.warning("could not clear the failed-login counters after a reset", exc_info=True)


def _seconds_until_reset(limiter: Limiter, error: RateLimitExceeded) -> int:
    try:
        breached = limiter.current_limit
        if breached is not None:
            return max(1, math.ceil(breached.window[0] - time.time()))
    except Exception:  # the store went away in between; the window length is a safe answer
        log.warning("could not read the rate-limit window, answering with its full length")
    return max(1, error.limit.limit.get_expiry())
