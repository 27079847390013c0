"""The account's own view of itself: its sessions, its security activity, and leaving (deletion, export)."""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from auth_service.activity import ActivityLog
from auth_service.entrypoints.http import schemas
from auth_service.entrypoints.http.routes import bearer_token, request_device
from auth_service.sessions import SessionService

account = Blueprint(
    "account", __name__, url_prefix="/auth", description="Sessions, security activity, deletion and export"
)

ERROR = schemas.ErrorResponse
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _sessions() -> SessionService:
    return current_app.extensions["auth_service"].sessions


def _activity() -> ActivityLog:
    return current_app.extensions["auth_service"].activity


@account.route("/sessions", methods=["GET"])
@account.response(200, schemas.SessionsResponse)
@account.alt_response(401, schema=ERROR, description="invalid_token")
@account.alt_response(429, schema=ERROR, description="rate_limited")
@account.doc(security=BEARER)
def list_sessions():
    """The account's live sessions, newest first: device, last IP, started and last used, and the caller's."""
    sessions, current = _sessions().list_sessions(bearer_token(), request_device())
    return {
        "sessions": [
            {
                "id": session.family_id,
                "device": session.device or "an unknown device",
                "ip": session.ip,
                "created_at": session.created_at,
                "last_used_at": session.last_used_at or session.created_at,
                "current": session.family_id == current,
            }
            for session in sessions
        ]
    }


@account.route("/sessions", methods=["DELETE"])
@account.response(204)
@account.alt_response(401, schema=ERROR, description="invalid_token")
@account.alt_response(429, schema=ERROR, description="rate_limited")
@account.doc(security=BEARER)
def end_other_sessions():
    """End every session of the account but the caller's."""
    _sessions().end_other_sessions(bearer_token(), request_device())


@account.route("/sessions/<string:session_id>", methods=["DELETE"])
@account.response(204)
@account.alt_response(401, schema=ERROR, description="invalid_token")
@account.alt_response(404, schema=ERROR, description="not_found: unknown, ended, or another account's")
@account.alt_response(429, schema=ERROR, description="rate_limited")
@account.doc(security=BEARER)
def end_session(session_id):
    """End one session: its refresh token is refused from then on."""
    _sessions().end_session(bearer_token(), session_id, request_device())


@account.route("/account/activity", methods=["GET"])
@account.response(200, schemas.ActivityResponse)
@account.alt_response(401, schema=ERROR, description="invalid_token")
@account.alt_response(429, schema=ERROR, description="rate_limited")
@account.doc(security=BEARER)
def activity():
    """The account's recent security activity, newest first: logins, failures, locks, changes, session ends."""
    user = _sessions().authenticate(bearer_token())
    return {
        "events": [
            {"type": entry.type, "occurred_at": entry.occurred_at, "ip": entry.ip, "device": entry.device}
            for entry in _activity().recent(user.id)
        ]
    }
