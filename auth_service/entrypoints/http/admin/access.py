"""The admin key check, the scope check, the per-key limit and the audit record, for every admin view.

A view says which scope it needs with ``@blueprint.requires(scope)`` (an
``AdminBlueprint``). Before it runs, in this order:

1. ``identify``: the key is looked up (``g.admin_key``), and the scope
   compared; a refusal is kept in ``g.admin_refusal``, not raised yet,
2. the limiter counts the request: per key for a good key, per IP otherwise
   (so a flood of bad keys is bounded too, and one key's use cannot spend another's),
3. ``refuse``: the kept refusal answers (401 or 403).

After it, a request made with a good key (a 403 included) is recorded in the
activity store with the key's name, the endpoint, the account it was about and
its status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from flask_smorest import Blueprint

from auth_service.config import Settings
from auth_service.domain.activity import Client
from auth_service.domain.admin_keys import AdminKey
from auth_service.domain.errors import AuthError
from auth_service.entrypoints.http import schemas
from auth_service.service_layer.activity import ActivityLog, bind_client, unbind_client
from auth_service.service_layer.admin_access import AdminAccess

ADMIN_KEY_SCHEME = "adminKey"
SECURITY: list[dict[str, list[str]]] = [{ADMIN_KEY_SCHEME: []}]
SCOPE_ATTRIBUTE = "admin_scope"
# The view argument that names the account a request is about, recorded as its subject.
SUBJECT_ARGUMENT = "user_id"


class AdminBlueprint(Blueprint):
    """A flask-smorest blueprint whose views name the admin scope they need."""

    def requires(self, scope: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            setattr(view, SCOPE_ATTRIBUTE, scope)
            for status, description in (
                (401, "invalid_token: no admin key, or an unknown or revoked one"),
                (403, f"forbidden: the key does not have the scope {scope}"),
                (429, "rate_limited: too many requests with this key"),
            ):
                view = self.alt_response(status, schema=schemas.ErrorResponse, description=description)(view)
            return self.doc(security=SECURITY, description=f"Scope: `{scope}`.")(view)

        return decorate


def required_scope(app: Flask) -> str | None:
    view = app.view_functions.get(request.endpoint or "")
    return getattr(view, SCOPE_ATTRIBUTE, None)


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def current_key() -> AdminKey | None:
    return g.get("admin_key")


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _limit_key() -> str:
    key = current_key()
    return f"admin-key:{key.key_id}" if key is not None else f"admin-ip:{_client_ip()}"


def install(app: Flask, access: AdminAccess, activity: ActivityLog | None, settings: Settings) -> Limiter:
    @app.before_request
    def identify():
        scope = required_scope(app)
        if scope is None:
            # Not an API view: a console page identified its key from its session already (console.py).
            return
        g.admin_key = None
        g.admin_refusal = None
        try:
            g.admin_key = access.authenticate(presented_key())
            access.authorize(g.admin_key, scope)
        except AuthError as refusal:
            g.admin_refusal = refusal
        key = current_key()
        g.activity_client = bind_client(Client(_client_ip(), None, actor=key.name if key else None))

    per_key, per_ip = settings.ratelimit_admin_per_key, settings.ratelimit_admin_per_ip
    memory = settings.ratelimit_storage_uri.startswith("memory://")
    # As for the public limits: flask-limiter's annotation says str | int, the Redis client takes float timeouts.
    storage_options: dict[str, Any] = {} if memory else settings.ratelimit_store_options
    limiter = Limiter(
        _limit_key,
        application_limits=[lambda: per_key if current_key() is not None else per_ip],
        storage_uri=settings.ratelimit_storage_uri,
        storage_options=storage_options,
        strategy="moving-window",
        key_prefix=f"{settings.ratelimit_key_prefix}-admin",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        enabled=settings.ratelimit_enabled,
    )
    limiter.init_app(app)

    @app.before_request
    def refuse():
        refusal = g.get("admin_refusal")
        if refusal is not None:
            raise refusal

    @app.after_request
    def record(response):
        key = current_key()
        if key is not None and activity is not None:
            subject = (request.view_args or {}).get(SUBJECT_ARGUMENT)
            activity.record_admin(request.endpoint or "unmatched", subject, response.status_code)
        return response

    @app.teardown_request
    def unbind(error=None):
        token = g.pop("activity_client", None)
        if token is not None:
            unbind_client(token)

    return limiter


def admin_services(name: str) -> Any:
    """One of the services the admin app was built with (``create_admin_app``'s keywords)."""
    return current_app.extensions["auth_admin"][name]
