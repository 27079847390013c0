"""The sign-up abuse checks (sign_up_abuse.py) in front of the views that send mail or set a password.

``checked`` runs inside flask-smorest's argument parsing, so it sees the validated
body, and before the view, so a refused request never reaches a use case: no
account read, no bcrypt, no mail. The CAPTCHA comes first of all; the token is
taken out of the body, so no use case ever holds it.

It goes right above the view function: of two descriptions of one status,
flask-smorest documents the innermost decorator's, so the 400, 422 and 503
it describes are the ones the document shows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import current_app, request

from auth_service.entrypoints.http import schemas
from auth_service.service_layer.sign_up_abuse import AbuseChecks

EXTENSION = "abuse_checks"
CAPTCHA_FIELD = "captcha_token"


def install(app, checks: AbuseChecks) -> None:
    app.extensions[EXTENSION] = checks


def _checks() -> AbuseChecks:
    return current_app.extensions[EXTENSION]


def checked(
    blueprint,
    *,
    captcha: bool = False,
    disposable_checked: str | None = None,
    breach_checked: str | None = None,
    breach_check_when: Callable[[], bool] | None = None,
):
    """``disposable_checked`` names the body's address field to check against the disposable domains,
    ``breach_checked`` its new password field to check against the breach corpus; ``breach_check_when``, if
    given, says whether this request's password is checked at all (for a signed-in endpoint: only with a
    well-signed token, so that the view's 401 comes first and nobody unauthenticated spends our look-ups)."""

    def decorate(view):
        @functools.wraps(view)
        def checked_view(*args, **kwargs):
            body = args[-1]
            checks = _checks()
            token = body.pop(CAPTCHA_FIELD, None)
            if captcha:
                checks.check_captcha(token, request.remote_addr)
            if disposable_checked is not None:
                checks.check_new_address(body[disposable_checked], disposable_checked)
            if breach_checked is not None and (breach_check_when is None or breach_check_when()):
                checks.check_new_password(body[breach_checked], breach_checked)
            return view(*args, **kwargs)

        if captcha:
            checked_view = blueprint.alt_response(
                400,
                schema=schemas.ErrorResponse,
                description="captcha_required or captcha_invalid (with CAPTCHA_PROVIDER set), or bad_request "
                "(body is not a JSON object)",
            )(checked_view)
            checked_view = blueprint.alt_response(
                503,
                schema=schemas.ErrorResponse,
                description="service_unavailable, with Retry-After: a store, the broker or the CAPTCHA provider "
                "does not answer",
            )(checked_view)
        refused = [
            *(["a disposable-mail address"] if disposable_checked else []),
            *(["a password found in a data breach"] if breach_checked else []),
        ]
        if refused:
            checked_view = blueprint.alt_response(
                422, schema=schemas.ErrorResponse, description=f"validation_error; also for {' or '.join(refused)}"
            )(checked_view)
        return checked_view

    return decorate
