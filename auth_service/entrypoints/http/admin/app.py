"""The admin API's Flask app: served by its own listener on ADMIN_PORT (entrypoints/server.py), never on AUTH_PORT.

It has the public app's edges (body cap, bounded JSON, the contract's error
body, request ids, security headers, metrics) and its own OpenAPI document at
``/admin/openapi.json``. An area of the API is a module with an
``AdminBlueprint``: add it to ``AREAS``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.exceptions import BadRequest

from auth_service.config import Settings
from auth_service.entrypoints.http import errors, observability, ratelimits, security_headers
from auth_service.entrypoints.http.admin import access, audit, console, introspect, suppressions, users, webhooks
from auth_service.entrypoints.http.admin.access import ADMIN_KEY_SCHEME, AdminBlueprint
from auth_service.entrypoints.http.app import ContractApi, install_request_ids
from auth_service.entrypoints.http.json_provider import BoundedJSONProvider
from auth_service.service_layer.activity import ActivityLog
from auth_service.service_layer.admin_access import AdminAccess
from common.metrics import CollectorRegistry
from common.tracing import instrument_flask

PREFIX = "/admin"
# Endpoints that take an HTML form, not a JSON object (the console's pages add theirs).
FORM_ENDPOINTS: set[str] = set()
# The areas of the admin API, each an AdminBlueprint of its own module.
AREAS: list[AdminBlueprint] = [
    users.users,
    introspect.introspection,
    audit.audit,
    suppressions.suppressions,
    webhooks.webhooks,
]


def create_admin_app(
    settings: Settings,
    access_check: AdminAccess,
    activity: ActivityLog | None = None,
    registry: CollectorRegistry | None = None,
    **services: Any,
) -> Flask:
    app = Flask("auth_service.admin")
    instrument_flask(app)
    app.json = BoundedJSONProvider(app)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="Auth service admin API",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Served on ADMIN_PORT only. Every request carries `Authorization: Bearer <admin key>` "
                "(`python -m auth_service admin-keys create`); each operation names the scope it needs."
            },
            "components": {"securitySchemes": {ADMIN_KEY_SCHEME: {"type": "http", "scheme": "bearer"}}},
        },
    )
    # What the views call, by name (access.admin_services): each area reads the services it needs.
    app.extensions["auth_admin"] = {"access": access_check, "activity": activity, **services}
    install_request_ids(app)
    # The support console's pages: plain HTML over the same services, outside the OpenAPI document. Installed
    # first: a page knows its key before the limiter counts the request, so it counts against the key's limit.
    console.install(app, settings)
    FORM_ENDPOINTS.update(console.form_endpoints(app))
    limiter = access.install(app, access_check, activity, settings)
    api = ContractApi(app)
    for area in AREAS:
        api.register_blueprint(area)
    security_headers.install(app)
    errors.install(app)

    ratelimits.answer_rate_limited(app, limiter)

    @app.before_request
    def require_json_object():
        # Most actions take no body; one that is sent must be a JSON object.
        has_body = request.method in ("POST", "PUT", "PATCH", "DELETE") and request.url_rule is not None
        if has_body and request.endpoint in FORM_ENDPOINTS:
            return
        if has_body and request.data and not isinstance(request.get_json(silent=True), dict):
            raise BadRequest("The request body must be a JSON object (Content-Type: application/json).")

    @app.after_request
    def never_cache(response):
        if request.endpoint == console.STATIC_ENDPOINT:
            return response  # the console's stylesheet and icon, the same for everyone
        # Accounts, sessions and introspection verdicts must not stay in any cache.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

    observability.install(app, registry if registry is not None else CollectorRegistry(), "admin_", serve_metrics=False)
    return app
