"""The Flask application factory: config, error handling, request ids, blueprints."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, g, request
from flask_smorest import Api
from werkzeug.exceptions import BadRequest, HTTPException

from auth_service.adapters.sns import SnsVerifier
from auth_service.config import Settings
from auth_service.domain.activity import Client
from auth_service.entrypoints.http import (
    abuse,
    account_routes,
    docs_assets,
    errors,
    jwks,
    mail_webhooks,
    observability,
    ratelimits,
    routes,
    schemas,
    security_headers,
)
from auth_service.entrypoints.http.json_provider import BoundedJSONProvider
from auth_service.service_layer.activity import ActivityLog, bind_client, unbind_client
from auth_service.service_layer.flows.deletion import AccountDeletion
from auth_service.service_layer.flows.email_change import EmailChange
from auth_service.service_layer.flows.export import AccountExport
from auth_service.service_layer.flows.login_security import PasswordLogins
from auth_service.service_layer.flows.mail_suppressions import MailSuppressions
from auth_service.service_layer.flows.not_me import NotMeLinks
from auth_service.service_layer.flows.password_reset import PasswordReset
from auth_service.service_layer.flows.registration import AccountRegistration
from auth_service.service_layer.flows.sessions import SessionService
from auth_service.service_layer.flows.sign_in import SignIn
from auth_service.service_layer.keyring import KeyRing
from auth_service.service_layer.sign_up_abuse import AbuseChecks
from common.metrics import CollectorRegistry
from common.tracing import instrument_flask

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@dataclass
class AuthExtension:
    registration: AccountRegistration
    password_reset: PasswordReset
    email_change: EmailChange
    passwords: PasswordLogins
    sessions: SessionService
    readiness: Callable[[], dict[str, str]]
    sign_in: SignIn
    not_me: NotMeLinks
    keys: KeyRing
    activity: ActivityLog | None = None
    deletion: AccountDeletion | None = None
    export: AccountExport | None = None
    mail_suppressions: MailSuppressions | None = None


class ContractApi(Api):
    """flask-smorest with the contract's error body instead of its own, in answers and in the document."""

    ERROR_SCHEMA = schemas.ErrorResponse

    def handle_http_exception(self, error: HTTPException):
        return errors.handle_http_exception(error)


def install_request_ids(app: Flask) -> None:
    """Each request gets an id (the client's ``X-Request-ID`` if well formed), on its log lines and its answer."""

    @app.before_request
    def assign_request_id():
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = offered if REQUEST_ID_PATTERN.match(offered) else uuid.uuid4().hex
        observability.start_request(g.request_id)

    @app.after_request
    def echo_request_id(response):
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response


def create_app(
    settings: Settings,
    registration: AccountRegistration,
    password_reset: PasswordReset,
    email_change: EmailChange,
    passwords: PasswordLogins,
    sessions: SessionService,
    readiness: Callable[[], dict[str, str]],
    registry: CollectorRegistry | None = None,
    *,
    sign_in: SignIn,
    not_me: NotMeLinks,
    keys: KeyRing,
    abuse_checks: AbuseChecks | None = None,
    activity: ActivityLog | None = None,
    deletion: AccountDeletion | None = None,
    export: AccountExport | None = None,
    mail_suppressions: MailSuppressions | None = None,
    sns_verifier: SnsVerifier | None = None,
) -> Flask:
    # The templates folder holds our /docs page, which replaces flask-smorest's; static holds its script.
    app = Flask(
        "auth_service",
        template_folder="entrypoints/http/templates",
        static_folder="entrypoints/http/static",
        static_url_path="/docs/assets",
    )
    # First of the request hooks: a request refused by a later one (not JSON, over a limit) has its span too.
    instrument_flask(app)
    app.json = BoundedJSONProvider(app)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        # The language of an account registered before accounts had one (/auth/me).
        DEFAULT_LOCALE=settings.default_locale,
        JWKS_MAX_AGE_SECONDS=settings.jwks_max_age_seconds,
        API_TITLE="Auth service",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=docs_assets.ASSETS_URL,
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            }
        },
    )
    app.extensions["auth_service"] = AuthExtension(
        registration=registration,
        password_reset=password_reset,
        email_change=email_change,
        passwords=passwords,
        sessions=sessions,
        readiness=readiness,
        sign_in=sign_in,
        not_me=not_me,
        keys=keys,
        activity=activity,
        deletion=deletion,
        export=export,
        mail_suppressions=mail_suppressions,
    )
    password = settings.postmark_webhook_password
    app.config["POSTMARK_WEBHOOK_CREDENTIALS"] = (
        settings.postmark_webhook_username,
        password.get_secret_value() if password else None,
    )
    verifier = sns_verifier if sns_verifier is not None else SnsVerifier(settings.ses_sns_topic_arns)
    app.config["SNS_VERIFIER"] = verifier
    app.config["SNS_CONFIRM"] = verifier.confirm_subscription

    abuse.install(app, abuse_checks or AbuseChecks.none())
    api = ContractApi(app)
    api.register_blueprint(routes.auth)
    api.register_blueprint(account_routes.account)
    api.register_blueprint(routes.health)
    api.register_blueprint(jwks.well_known)
    if mail_suppressions is not None:
        api.register_blueprint(mail_webhooks.mail_webhooks)
    docs_assets.install(app)
    # The client's address behind a proxy (PROXY_HOPS) is the server's to set: see entrypoints/server.py.
    ratelimits.install(app, settings)
    security_headers.install(app)

    errors.install(app)
    install_request_ids(app)

    @app.before_request
    def bind_activity_client():
        # What the account's activity records of this request: its address and device (service_layer/activity.py).
        device = routes.request_device()
        g.activity_client = bind_client(Client(device.ip, device.label))

    @app.teardown_request
    def unbind_activity_client(error=None):
        token = g.pop("activity_client", None)
        if token is not None:
            unbind_client(token)

    @app.before_request
    def require_json_object():
        has_body = request.method in ("POST", "PUT", "PATCH") and request.url_rule is not None
        if has_body and (
            request.endpoint in routes.FORM_ENDPOINTS or request.endpoint in mail_webhooks.RAW_BODY_ENDPOINTS
        ):
            return
        if has_body and not isinstance(request.get_json(silent=True), dict):
            raise BadRequest("The request body must be a JSON object (Content-Type: application/json).")

    @app.after_request
    def never_cache_auth_answers(response):
        # Tokens and code verdicts must not stay in a shared or browser cache, errors included.
        if request.path.startswith(routes.auth.url_prefix + "/"):
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
        return response

    observability.install(app, registry if registry is not None else CollectorRegistry())
    return app
