"""The HTTP endpoints. Each view parses, calls one use case, and shapes the answer."""

from __future__ import annotations

from flask import current_app, g, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from auth_service.domain.accounts import User
from auth_service.domain.devices import Device
from auth_service.domain.errors import AuthError
from auth_service.domain.recovery import EMAIL_CHANGE_UNDONE
from auth_service.domain.sessions import TokenPair
from auth_service.entrypoints.http import pages, schemas
from auth_service.entrypoints.http.abuse import checked
from auth_service.service_layer.flows.email_change import EmailChange
from auth_service.service_layer.flows.not_me import LinkRefused, NotMeLinks
from auth_service.service_layer.flows.password_reset import PasswordReset
from auth_service.service_layer.flows.registration import AccountRegistration
from auth_service.service_layer.flows.sessions import SessionService
from auth_service.service_layer.flows.sign_in import MfaChallenge, SignIn
from auth_service.service_layer.links import InvalidLink, LinkGone

# Request schemas are given as instances, built once: given a class, webargs builds a new schema for
# every request (marshmallow 4 schemas keep no per-load state, so threads can share one).
auth = Blueprint("auth", __name__, url_prefix="/auth", description="Registration, confirmation, login")
health = Blueprint("health", __name__, description="Liveness and readiness")

ERROR = schemas.ErrorResponse


# Endpoints that take an HTML form, not a JSON object.
FORM_ENDPOINTS = frozenset({"auth.verify_link", "auth.not_me", "account.restore"})


def _registration() -> AccountRegistration:
    return current_app.extensions["auth_service"].registration


def _password_reset() -> PasswordReset:
    return current_app.extensions["auth_service"].password_reset


def _email_change() -> EmailChange:
    return current_app.extensions["auth_service"].email_change


def _not_me() -> NotMeLinks:
    return current_app.extensions["auth_service"].not_me


def _sessions() -> SessionService:
    return current_app.extensions["auth_service"].sessions


def _sign_in() -> SignIn:
    return current_app.extensions["auth_service"].sign_in


def _json_body_errors(view):
    """The answers every JSON-body endpoint can give besides its own, documented once."""
    for status, description in (
        (400, "Body is not a JSON object"),
        (422, "validation_error"),
        (429, "rate_limited"),
        (503, "service_unavailable: a store does not answer"),
    ):
        view = auth.alt_response(status, schema=ERROR, description=description)(view)
    return view


def _code_errors(view):
    """The answers to a wrong, used or burned code, as /auth/confirm gives them; documented once.
    Applied above ``_json_body_errors``, so its 400 and 429 descriptions are the ones kept."""
    for status, description in (
        (400, "invalid_code (with attempts_left) or bad_request"),
        (410, "code_expired"),
        (429, "too_many_attempts or rate_limited"),
    ):
        view = auth.alt_response(status, schema=ERROR, description=description)(view)
    return view


# The device a login comes from (domain/devices.py): the emailed second factor trusts a device, not a session.
DEVICE_HEADER = {
    "in": "header",
    "name": "X-Device-Id",
    "required": False,
    "schema": {"type": "string"},
    "description": "a random id the app keeps per installation (its first 200 characters count); without it, "
    "the User-Agent and the network",
}


# What the session list calls the device (GET /auth/sessions); without it, a label read from the User-Agent.
DEVICE_NAME_HEADER = {
    "in": "header",
    "name": "X-Device-Name",
    "required": False,
    "schema": {"type": "string"},
    "description": "the device's name as the user knows it (\"Ada's iPhone\"), shown in the session list",
}


def _token_answer(pair: TokenPair) -> dict:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


@auth.route("/register", methods=["POST"])
@auth.arguments(schemas.RegisterRequest())
@auth.response(201, schemas.RegisteredResponse)
@auth.alt_response(400, schema=ERROR, description="Body is not a JSON object")
@auth.alt_response(409, schema=ERROR, description="email_taken")
@auth.alt_response(422, schema=ERROR, description="validation_error")
@auth.alt_response(429, schema=ERROR, description="rate_limited")
@auth.alt_response(503, schema=ERROR, description="service_unavailable: a store or the broker does not answer")
@checked(auth, captcha=True, disposable_checked="email", breach_checked="password")
def register(body):
    """Create an account and email a verification code."""
    user = _registration().register(
        body["email"], body["password"], body.get("name"), g.request_id, preferred_locales=_preferred_locales(body)
    )
    return {"id": user.id, "email": user.email, "status": user.status.value}


def _preferred_locales(body: dict) -> list[str]:
    """The languages the registrant asked for, most wanted first: the body's ``locale``, then the
    Accept-Language header's by quality (a language it refuses, ``q=0``, is none of them)."""
    chosen = [body["locale"]] if body.get("locale") else []
    accepted = sorted(request.accept_languages, key=lambda item: item[1], reverse=True)
    return chosen + [tag for tag, quality in accepted if quality > 0]


@auth.route("/confirm", methods=["POST"])
@auth.arguments(schemas.ConfirmRequest())
@auth.response(200, schemas.ConfirmResponse)
@auth.alt_response(202, schema=schemas.ConfirmResponse, description="No verdict in time; confirmed once processed")
@auth.alt_response(400, schema=ERROR, description="invalid_code (with attempts_left) or bad_request")
@auth.alt_response(410, schema=ERROR, description="code_expired")
@auth.alt_response(422, schema=ERROR, description="validation_error")
@auth.alt_response(429, schema=ERROR, description="too_many_attempts or rate_limited")
@auth.alt_response(503, schema=ERROR, description="service_unavailable")
def confirm(body):
    """Submit the emailed code."""
    result = _registration().confirm(body["email"], body["code"], g.request_id)
    user = result.user
    if result.verified:
        return {"email": user.email, "status": "verified"}, 200
    return {"email": user.email, "status": user.status.value}, 202


@auth.route("/resend-code", methods=["POST"])
@auth.arguments(schemas.ResendRequest())
@auth.response(202, schemas.AcceptedResponse)
@auth.alt_response(400, schema=ERROR, description="Body is not a JSON object")
@auth.alt_response(422, schema=ERROR, description="validation_error")
@auth.alt_response(429, schema=ERROR, description="rate_limited, with Retry-After")
@auth.alt_response(503, schema=ERROR, description="service_unavailable")
@checked(auth, captcha=True)
def resend_code(body):
    """Ask for a new code. Answers alike whether or not the address has an account."""
    _registration().resend_code(body["email"], g.request_id)
    return {"status": "accepted", "message": "If the address has a pending account, a new code is on its way."}


@auth.route("/login", methods=["POST"])
@auth.arguments(schemas.LoginRequest())
@auth.response(200, schemas.TokenResponse)
@auth.alt_response(
    202,
    schema=schemas.MfaChallengeResponse,
    description="The emailed second factor is on and this device is not trusted: a sign-in code is on its way; "
    "send it with the challenge to POST /auth/login/verify",
)
@auth.alt_response(400, schema=ERROR, description="Body is not a JSON object")
@auth.alt_response(401, schema=ERROR, description="invalid_credentials")
@auth.alt_response(403, schema=ERROR, description="email_not_verified")
@auth.alt_response(422, schema=ERROR, description="validation_error")
@auth.alt_response(429, schema=ERROR, description="rate_limited (with the second factor: a code was sent just now)")
@auth.alt_response(503, schema=ERROR, description="service_unavailable: a store or the broker does not answer")
@auth.doc(parameters=[DEVICE_HEADER, DEVICE_NAME_HEADER])
def login(body):
    """Exchange email and password for an access token and a refresh token (or a second-factor challenge)."""
    result = _sign_in().login(body["email"], body["password"], request_device(), g.request_id)
    if isinstance(result, MfaChallenge):
        return jsonify({"mfa_required": True, "challenge": result.challenge}), 202
    return _token_answer(result)


@auth.route("/login/verify", methods=["POST"])
@auth.arguments(schemas.LoginVerifyRequest())
@auth.response(200, schemas.TokenResponse)
@_code_errors
@_json_body_errors
@auth.doc(parameters=[DEVICE_HEADER, DEVICE_NAME_HEADER])
def login_verify(body):
    """Finish a login that answered a challenge: the challenge and the emailed code give the token pair.
    The device is not asked again for MFA_TRUST_DAYS. An unknown, used or expired challenge is code_expired."""
    return _token_answer(_sign_in().verify_challenge(body["challenge"], body["code"], request_device(), g.request_id))


@auth.route("/login/code", methods=["POST"])
@auth.arguments(schemas.LoginCodeRequest())
@auth.response(202, schemas.AcceptedResponse)
@_json_body_errors
@checked(auth, captcha=True)
def login_code(body):
    """Ask for a sign-in code, to sign in without the password. Answers alike for every address."""
    _sign_in().ask_code(body["email"], g.request_id)
    return {"status": "accepted", "message": "If the address has a confirmed account, a sign-in code is on its way."}


@auth.route("/login/code/verify", methods=["POST"])
@auth.arguments(schemas.LoginCodeVerifyRequest())
@auth.response(200, schemas.TokenResponse)
@_code_errors
@_json_body_errors
@auth.doc(parameters=[DEVICE_HEADER])
def login_code_verify(body):
    """Sign in with the emailed sign-in code instead of the password (not for an account with the second
    factor on: it is mailed no such code). A device the account has not used gets a new-sign-in notice."""
    return _token_answer(_sign_in().verify_code(body["email"], body["code"], request_device(), g.request_id))


@auth.route("/mfa", methods=["POST"])
@auth.arguments(schemas.MfaRequest())
@auth.response(200, schemas.MfaResponse)
@auth.alt_response(401, schema=ERROR, description="invalid_credentials (wrong password) or invalid_token")
@_json_body_errors
@auth.doc(security=[{"bearerAuth": []}])
def set_mfa(body):
    """Turn the emailed second factor on or off; a change mails the account a notice."""
    enabled = _sign_in().set_mfa(bearer_token(), body["enabled"], body["password"], g.request_id)
    return {"mfa": "email" if enabled else "off"}


def request_device() -> Device:
    """The device of this request: the client address as waitress resolved it, User-Agent, X-Device-Id,
    and the name the app gives it (X-Device-Name)."""
    return Device(
        ip=request.remote_addr or "unknown",
        user_agent=request.headers.get("User-Agent"),
        device_id=request.headers.get("X-Device-Id"),
        name=request.headers.get("X-Device-Name"),
    )


@auth.route("/token/refresh", methods=["POST"])
@auth.arguments(schemas.RefreshTokenRequest())
@auth.response(200, schemas.TokenResponse)
@auth.alt_response(401, schema=ERROR, description="invalid_token: unknown, expired, used, or its session ended")
@_json_body_errors
def refresh_token(body):
    """Exchange a refresh token for a new pair. Each refresh token works once."""
    return _token_answer(_sessions().refresh(body["refresh_token"], request.remote_addr))


@auth.route("/logout", methods=["POST"])
@auth.arguments(schemas.RefreshTokenRequest())
@auth.response(204)
@_json_body_errors
def logout(body):
    """End the refresh token's session. 204 also for a token that is unknown or already ended."""
    _sessions().logout(body["refresh_token"])


@auth.route("/password/change", methods=["POST"])
@auth.arguments(schemas.PasswordChangeRequest())
@auth.response(200, schemas.TokenResponse)
@auth.alt_response(401, schema=ERROR, description="invalid_credentials (wrong current password) or invalid_token")
@_json_body_errors
@auth.doc(security=[{"bearerAuth": []}])
@checked(auth, breach_checked="new_password", breach_check_when=lambda: _well_signed(bearer_token()))
def change_password(body):
    """Change the password. Every other token of the account is refused from then on; answers the new pair."""
    pair = _sessions().change_password(bearer_token(), body["current_password"], body["new_password"], request_device())
    return _token_answer(pair)


@auth.route("/me", methods=["GET"])
@auth.response(200, schemas.ProfileResponse)
@auth.alt_response(401, schema=ERROR, description="invalid_token")
@auth.alt_response(503, schema=ERROR, description="service_unavailable: a store or the broker does not answer")
@auth.doc(security=[{"bearerAuth": []}])
def me():
    """The account behind the bearer token."""
    return _profile(_sessions().authenticate(bearer_token()))


def _profile(user: User) -> dict:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "status": user.status.value,
        "created_at": user.created_at,
        "locale": user.locale or current_app.config["DEFAULT_LOCALE"],
        "email_deliverable": _deliverable(user.email),
    }


def _deliverable(email: str) -> bool:
    suppressions = current_app.extensions["auth_service"].mail_suppressions
    return suppressions is None or suppressions.deliverable(email)


@auth.route("/password/forgot", methods=["POST"])
@auth.arguments(schemas.ForgotPasswordRequest())
@auth.response(202, schemas.AcceptedResponse)
@_json_body_errors
@checked(auth, captcha=True)
def forgot_password(body):
    """Ask for a password reset code. Answers alike whether or not the address has an account."""
    _password_reset().forgot_password(body["email"], g.request_id)
    return {"status": "accepted", "message": "If the address has an account, a reset code is on its way."}


@auth.route("/password/reset", methods=["POST"])
@auth.arguments(schemas.ResetPasswordRequest())
@auth.response(200, schemas.StatusResponse)
@auth.alt_response(
    202, schema=schemas.StatusResponse, description="No verdict in time; the new password applies once it is judged"
)
@auth.doc(parameters=[DEVICE_HEADER])
@_code_errors
@_json_body_errors
@checked(auth, breach_checked="new_password")
def reset_password(body):
    """Set a new password with the emailed reset code; every earlier session and token ends."""
    applied = _password_reset().reset_password(
        body["email"], body["code"], body["new_password"], request_device(), g.request_id
    )
    if applied:
        return {"status": "password_reset"}, 200
    return {"status": "pending"}, 202


@auth.route("/email/change", methods=["POST"])
@auth.arguments(schemas.EmailChangeRequest())
@auth.response(202, schemas.AcceptedResponse)
@auth.alt_response(401, schema=ERROR, description="invalid_credentials (wrong password) or invalid_token")
@auth.alt_response(409, schema=ERROR, description="email_taken")
@_json_body_errors
@auth.doc(security=[{"bearerAuth": []}])
@checked(auth, disposable_checked="new_email")
def change_email(body):
    """Ask to change the account's address: a code goes to the new one, a notice to the current one."""
    _email_change().request_email_change(bearer_token(), body["new_email"], body["password"], g.request_id)
    return {"status": "accepted", "message": "A code is on its way to the new address."}


@auth.route("/email/confirm", methods=["POST"])
@auth.arguments(schemas.EmailConfirmRequest())
@auth.response(200, schemas.ProfileResponse)
@auth.alt_response(
    202, schema=schemas.ProfileResponse, description="No verdict in time; the address changes once it is judged"
)
@auth.alt_response(401, schema=ERROR, description="invalid_token")
@auth.alt_response(409, schema=ERROR, description="email_taken: another account confirmed the address meanwhile")
@_code_errors
@_json_body_errors
@auth.doc(security=[{"bearerAuth": []}])
def confirm_email(body):
    """Confirm the new address with its code; it is the login from then on."""
    outcome = _email_change().confirm_email_change(bearer_token(), body["code"], g.request_id)
    return _profile(outcome.user), 200 if outcome.applied else 202


class VerifyLink(MethodView):
    @auth.arguments(schemas.VerifyLinkArgs(), location="query")
    @auth.response(200, schemas.HTML_PAGE, content_type="text/html", description="The page with the confirm button")
    @auth.alt_response(400, schema=schemas.HTML_PAGE, content_type="text/html", description="The link is not valid")
    @auth.alt_response(429, schema=ERROR, description="rate_limited")
    @auth.alt_response(503, schema=ERROR, description="service_unavailable")
    def get(self, args):
        """The verification email's link: a page whose one button confirms. Opening it confirms nothing."""
        token = args["token"]
        try:
            _registration().check_link(token)
        except InvalidLink:
            return pages.not_valid()
        return pages.confirm_button(token, action=url_for("auth.verify_link"))

    @auth.arguments(schemas.VerifyLinkArgs(), location="form")
    @auth.response(200, schemas.HTML_PAGE, content_type="text/html", description="Address confirmed")
    @auth.alt_response(
        202, schema=schemas.HTML_PAGE, content_type="text/html", description="No verdict in time; confirmed later"
    )
    @auth.alt_response(400, schema=schemas.HTML_PAGE, content_type="text/html", description="The link is not valid")
    @auth.alt_response(
        410, schema=schemas.HTML_PAGE, content_type="text/html", description="The link was used or has expired"
    )
    @auth.alt_response(429, schema=ERROR, description="rate_limited")
    @auth.alt_response(503, schema=schemas.HTML_PAGE, content_type="text/html", description="Try again shortly")
    def post(self, args):
        """The page's button: confirm the address with the link's token (form field ``token``)."""
        try:
            outcome = _registration().confirm_by_link(args["token"], g.request_id)
        except InvalidLink:
            return pages.not_valid()
        except AuthError as error:
            return pages.for_error(error)
        return pages.confirmed() if outcome.applied else pages.in_progress()


# The class itself, not as_view(): flask-smorest documents a MethodView only when handed the class.
auth.add_url_rule("/verify", endpoint="verify_link", view_func=VerifyLink)


class NotMe(MethodView):
    @auth.arguments(schemas.VerifyLinkArgs(), location="query")
    @auth.response(200, schemas.HTML_PAGE, content_type="text/html", description="The page with the one button")
    @auth.alt_response(400, schema=schemas.HTML_PAGE, content_type="text/html", description="The link is not valid")
    @auth.alt_response(410, schema=schemas.HTML_PAGE, content_type="text/html", description="Used or expired")
    @auth.alt_response(429, schema=ERROR, description="rate_limited")
    def get(self, args):
        """A security notice's "this wasn't me" link: a page whose one button acts. Opening it does nothing."""
        token = args["token"]
        try:
            link = _not_me().check(token)
        except InvalidLink:
            return pages.not_valid()
        except LinkRefused as refused:
            return pages.not_me_refused(refused.refusal)
        except LinkGone:
            return pages.not_me_gone()
        if link.notice == EMAIL_CHANGE_UNDONE:
            return pages.contest_button(token, action=url_for("auth.not_me"))
        return pages.not_me_button(token, action=url_for("auth.not_me"))

    @auth.arguments(schemas.VerifyLinkArgs(), location="form")
    @auth.response(200, schemas.HTML_PAGE, content_type="text/html", description="Signed out everywhere")
    @auth.alt_response(400, schema=schemas.HTML_PAGE, content_type="text/html", description="The link is not valid")
    @auth.alt_response(
        410,
        schema=schemas.HTML_PAGE,
        content_type="text/html",
        description="Used, voided or expired; or it can do nothing (the address is no longer the account's, "
        "or the account is frozen)",
    )
    @auth.alt_response(429, schema=ERROR, description="rate_limited")
    @auth.alt_response(503, schema=ERROR, description="service_unavailable")
    def post(self, args):
        """The page's button (form field ``token``): end every session and token of the account, make the
        password unusable until a reset, take back the address the notice went to if the account left it
        within the undo window, and mail a password-reset code to the account's login. Works once, and
        voids the account's other links. An undo's contest link freezes the account for support."""
        try:
            done = _not_me().act(args["token"], g.request_id)
        except InvalidLink:
            return pages.not_valid()
        except LinkRefused as refused:
            return pages.not_me_refused(refused.refusal)
        except LinkGone:
            return pages.not_me_gone()
        return pages.not_me_done(done)


auth.add_url_rule("/not-me", endpoint="not_me", view_func=NotMe)


def _well_signed(token: str | None) -> bool:
    return token is not None and _sessions().token_subject(token) is not None


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Healthz(MethodView):
    @health.response(200, schemas.HealthResponse)
    def get(self):
        """Alive while the process runs."""
        return {"status": "ok"}


class Readyz(MethodView):
    @health.response(200, schemas.HealthResponse)
    @health.alt_response(503, schema=schemas.HealthResponse, description="names what is down")
    def get(self):
        """Ready when MongoDB and RabbitMQ answer."""
        checks = current_app.extensions["auth_service"].readiness()
        ready = all(state == "up" for state in checks.values())
        return {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503


# The classes themselves, not as_view(): flask-smorest documents a MethodView only when handed the class.
health.add_url_rule("/healthz", endpoint="healthz", view_func=Healthz)
health.add_url_rule("/readyz", endpoint="readyz", view_func=Readyz)
