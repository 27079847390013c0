"""The HTTP endpoints. Each view parses, calls one use case, and shapes the answer."""

from __future__ import annotations

from flask import current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from auth_service.domain.sessions import TokenPair
from auth_service.entrypoints.http import schemas
from auth_service.service import AccountService
from auth_service.sessions import SessionService

auth = Blueprint("auth", __name__, url_prefix="/auth", description="Registration, confirmation, login")
health = Blueprint("health", __name__, description="Liveness and readiness")

ERROR = schemas.ErrorResponse


def _accounts() -> AccountService:
    return current_app.extensions["auth_service"].accounts


def _sessions() -> SessionService:
    return current_app.extensions["auth_service"].sessions


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


def _token_answer(pair: TokenPair) -> dict:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


@auth.route("/register", methods=["POST"])
@auth.arguments(schemas.RegisterRequest)
@auth.response(201, schemas.RegisteredResponse)
@auth.alt_response(400, schema=ERROR, description="Body is not a JSON object")
@auth.alt_response(409, schema=ERROR, description="email_taken")
@auth.alt_response(422, schema=ERROR, description="validation_error")
@auth.alt_response(429, schema=ERROR, description="rate_limited")
@auth.alt_response(503, schema=ERROR, description="service_unavailable: a store or the broker does not answer")
def register(body):
    """Create an account and email a verification code."""
    user = _accounts().register(body["email"], body["password"], body.get("name"), g.request_id)
    return {"id": user.id, "email": user.email, "status": user.status.value}


@auth.route("/confirm", methods=["POST"])
@auth.arguments(schemas.ConfirmRequest)
@auth.response(200, schemas.ConfirmResponse)
@auth.alt_response(202, schema=schemas.ConfirmResponse, description="No verdict in time; confirmed once processed")
@auth.alt_response(400, schema=ERROR, description="invalid_code (with attempts_left) or bad_request")
@auth.alt_response(410, schema=ERROR, description="code_expired")
@auth.alt_response(422, schema=ERROR, description="validation_error")
@auth.alt_response(429, schema=ERROR, description="too_many_attempts or rate_limited")
@auth.alt_response(503, schema=ERROR, description="service_unavailable")
def confirm(body):
    """Submit the emailed code."""
    result = _accounts().confirm(body["email"], body["code"], g.request_id)
    user = result.user
    if result.verified:
        return {"email": user.email, "status": "verified"}, 200
    return {"email": user.email, "status": user.status.value}, 202


@auth.route("/resend-code", methods=["POST"])
@auth.arguments(schemas.ResendRequest)
@auth.response(202, schemas.AcceptedResponse)
@auth.alt_response(400, schema=ERROR, description="Body is not a JSON object")
@auth.alt_response(422, schema=ERROR, description="validation_error")
@auth.alt_response(429, schema=ERROR, description="rate_limited, with Retry-After")
@auth.alt_response(503, schema=ERROR, description="service_unavailable")
def resend_code(body):
    """Ask for a new code. Answers alike whether or not the address has an account."""
    _accounts().resend_code(body["email"], g.request_id)
    return {"status": "accepted", "message": "If the address has a pending account, a new code is on its way."}


@auth.route("/login", methods=["POST"])
@auth.arguments(schemas.LoginRequest)
@auth.response(200, schemas.TokenResponse)
@auth.alt_response(400, schema=ERROR, description="Body is not a JSON object")
@auth.alt_response(401, schema=ERROR, description="invalid_credentials")
@auth.alt_response(403, schema=ERROR, description="email_not_verified")
@auth.alt_response(422, schema=ERROR, description="validation_error")
@auth.alt_response(429, schema=ERROR, description="rate_limited")
@auth.alt_response(503, schema=ERROR, description="service_unavailable: a store or the broker does not answer")
def login(body):
    """Exchange email and password for an access token and a refresh token."""
    return _token_answer(_accounts().login(body["email"], body["password"]))


@auth.route("/token/refresh", methods=["POST"])
@auth.arguments(schemas.RefreshTokenRequest)
@auth.response(200, schemas.TokenResponse)
@auth.alt_response(401, schema=ERROR, description="invalid_token: unknown, expired, used, or its session ended")
@_json_body_errors
def refresh_token(body):
    """Exchange a refresh token for a new pair. Each refresh token works once."""
    return _token_answer(_sessions().refresh(body["refresh_token"]))


@auth.route("/logout", methods=["POST"])
@auth.arguments(schemas.RefreshTokenRequest)
@auth.response(204)
@_json_body_errors
def logout(body):
    """End the refresh token's session. 204 also for a token that is unknown or already ended."""
    _sessions().logout(body["refresh_token"])


@auth.route("/password/change", methods=["POST"])
@auth.arguments(schemas.PasswordChangeRequest)
@auth.response(200, schemas.TokenResponse)
@auth.alt_response(401, schema=ERROR, description="invalid_credentials (wrong current password) or invalid_token")
@_json_body_errors
@auth.doc(security=[{"bearerAuth": []}])
def change_password(body):
    """Change the password. Every other token of the account is refused from then on; answers the new pair."""
    pair = _sessions().change_password(bearer_token(), body["current_password"], body["new_password"])
    return _token_answer(pair)


@auth.route("/me", methods=["GET"])
@auth.response(200, schemas.ProfileResponse)
@auth.alt_response(401, schema=ERROR, description="invalid_token")
@auth.alt_response(503, schema=ERROR, description="service_unavailable: a store or the broker does not answer")
@auth.doc(security=[{"bearerAuth": []}])
def me():
    """The account behind the bearer token."""
    user = _sessions().authenticate(bearer_token())
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "status": user.status.value,
        "created_at": user.created_at,
    }


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
