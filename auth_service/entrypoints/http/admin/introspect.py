"""``POST /admin/introspect``: RFC 7662's answer for a service that must know about revocation at once."""

from __future__ import annotations

from datetime import UTC, datetime

from auth_service.domain.admin_keys import INTROSPECT
from auth_service.entrypoints.http.admin import schemas
from auth_service.entrypoints.http.admin.access import AdminBlueprint, admin_services
from auth_service.entrypoints.http.schemas import ErrorResponse
from auth_service.service_layer.flows.sessions import SessionService

introspection = AdminBlueprint("admin_introspect", __name__, url_prefix="/admin", description="Token introspection")


@introspection.route("/introspect", methods=["POST"])
@introspection.requires(INTROSPECT)
@introspection.arguments(schemas.IntrospectRequest())
@introspection.response(200, schemas.IntrospectResponse)
@introspection.alt_response(400, schema=ErrorResponse, description="bad_request: the body is not a JSON object")
@introspection.alt_response(422, schema=ErrorResponse, description="validation_error")
def introspect(body):
    """``{active: true, sub, sid, exp, iat, email, status}`` for a live access token, else ``{active: false}``:
    expired, forged, of an ended session, of a disabled or deleted account, or no token of ours."""
    sessions: SessionService = admin_services("sessions")
    found = sessions.introspect(body["token"])
    if found is None:
        return {"active": False}
    claims, user = found
    return {
        "active": True,
        "sub": claims.subject,
        "sid": claims.session_id,
        "exp": claims.expires_at,
        "iat": claims.issued_at,
        "email": user.email,
        "status": user.shown_status(datetime.now(UTC)),
    }
