"""The account's own view of itself: its sessions, its security activity, and leaving (deletion, export)."""

from __future__ import annotations

import json

from flask import Response, current_app, g, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from auth_service.entrypoints.http import pages, schemas
from auth_service.entrypoints.http.routes import bearer_token
from auth_service.service_layer.activity import ActivityLog
from auth_service.service_layer.flows.deletion import AccountDeletion
from auth_service.service_layer.flows.export import AccountExport
from auth_service.service_layer.flows.sessions import SessionService
from auth_service.service_layer.links import InvalidLink, LinkGone

account = Blueprint(
    "account", __name__, url_prefix="/auth", description="Sessions, security activity, deletion and export"
)

ERROR = schemas.ErrorResponse
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _sessions() -> SessionService:
    return current_app.extensions["auth_service"].sessions


def _activity() -> ActivityLog:
    return current_app.extensions["auth_service"].activity


def _deletion() -> AccountDeletion:
    return current_app.extensions["auth_service"].deletion


def _export() -> AccountExport:
    return current_app.extensions["auth_service"].export


def _json_body_errors(view):
    for status, description in (
        (400, "Body is not a JSON object"),
        (422, "validation_error"),
        (429, "rate_limited"),
        (503, "service_unavailable: a store or the broker does not answer"),
    ):
        view = account.alt_response(status, schema=ERROR, description=description)(view)
    return view


@account.route("/sessions", methods=["GET"])
@account.response(200, schemas.SessionsResponse)
@account.alt_response(401, schema=ERROR, description="invalid_token")
@account.alt_response(429, schema=ERROR, description="rate_limited")
@account.doc(security=BEARER)
def list_sessions():
    """The account's live sessions, newest first: device, last IP, started and last used, and the caller's."""
    sessions, current = _sessions().list_sessions(bearer_token())
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
    _sessions().end_other_sessions(bearer_token())


@account.route("/sessions/<string:session_id>", methods=["DELETE"])
@account.response(204)
@account.alt_response(401, schema=ERROR, description="invalid_token")
@account.alt_response(404, schema=ERROR, description="not_found: unknown, ended, or another account's")
@account.alt_response(429, schema=ERROR, description="rate_limited")
@account.doc(security=BEARER)
def end_session(session_id):
    """End one session: its refresh token is refused from then on."""
    _sessions().end_own_session(bearer_token(), session_id)


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


@account.route("/account/delete", methods=["POST"])
@account.arguments(schemas.PasswordRequest())
@account.response(202, schemas.AcceptedResponse)
@account.alt_response(401, schema=ERROR, description="invalid_credentials (wrong password) or invalid_token")
@_json_body_errors
@account.doc(security=BEARER)
def delete_account(body):
    """Ask to delete the account: a code to confirm goes to its address. Nothing changes before the code."""
    _deletion().request(bearer_token(), body["password"], g.request_id)
    return {"status": "accepted", "message": "A code to confirm the deletion is on its way to your address."}


@account.route("/account/delete/confirm", methods=["POST"])
@account.arguments(schemas.EmailConfirmRequest())
@account.response(200, schemas.DeletionResponse)
@account.alt_response(
    202, schema=schemas.DeletionResponse, description="No verdict in time; the deletion applies once it is judged"
)
@account.alt_response(400, schema=ERROR, description="invalid_code (with attempts_left) or bad_request")
@account.alt_response(401, schema=ERROR, description="invalid_token")
@account.alt_response(410, schema=ERROR, description="code_expired")
@account.alt_response(429, schema=ERROR, description="too_many_attempts or rate_limited")
@_json_body_errors
@account.doc(security=BEARER)
def confirm_deletion(body):
    """Confirm the deletion with its code: every session ends, and the account is erased when the grace
    (ACCOUNT_DELETION_GRACE_SECONDS) ends, unless the link mailed now restores it first."""
    confirmed = _deletion().confirm(bearer_token(), body["code"], g.request_id)
    if not confirmed.applied:
        return {"status": "pending", "delete_after": None}, 202
    status = "deleted" if confirmed.erased else "pending_deletion"
    return {"status": status, "delete_after": confirmed.delete_after}


class Restore(MethodView):
    @account.arguments(schemas.VerifyLinkArgs(), location="query")
    @account.response(200, schemas.HTML_PAGE, content_type="text/html", description="The page with the one button")
    @account.alt_response(400, schema=schemas.HTML_PAGE, content_type="text/html", description="Not a valid link")
    @account.alt_response(410, schema=schemas.HTML_PAGE, content_type="text/html", description="Used or expired")
    @account.alt_response(429, schema=ERROR, description="rate_limited")
    def get(self, args):
        """The deletion notice's link: a page whose one button keeps the account. Opening it does nothing."""
        token = args["token"]
        try:
            _deletion().check_restore(token)
        except InvalidLink:
            return pages.not_valid()
        except LinkGone:
            return pages.restore_gone()
        return pages.restore_button(token, action=url_for("account.restore"))

    @account.arguments(schemas.VerifyLinkArgs(), location="form")
    @account.response(200, schemas.HTML_PAGE, content_type="text/html", description="The account is kept")
    @account.alt_response(400, schema=schemas.HTML_PAGE, content_type="text/html", description="Not a valid link")
    @account.alt_response(410, schema=schemas.HTML_PAGE, content_type="text/html", description="Used or expired")
    @account.alt_response(429, schema=ERROR, description="rate_limited")
    @account.alt_response(503, schema=ERROR, description="service_unavailable")
    def post(self, args):
        """The page's button (form field ``token``): the deletion is cancelled. Works once, for the deletion
        whose notice carried it, until its grace ends."""
        try:
            _deletion().restore(args["token"])
        except InvalidLink:
            return pages.not_valid()
        except LinkGone:
            return pages.restore_gone()
        return pages.restored()


# The class itself, not as_view(): flask-smorest documents a MethodView only when handed the class.
account.add_url_rule("/account/restore", endpoint="restore", view_func=Restore)


@account.route("/account/export", methods=["POST"])
@account.arguments(schemas.PasswordRequest())
@account.response(200, schemas.ExportResponse, description="A JSON attachment: everything kept about the account")
@account.alt_response(401, schema=ERROR, description="invalid_credentials (wrong password) or invalid_token")
@_json_body_errors
@account.doc(security=BEARER)
def export_account(body):
    """Everything the service keeps about the account, as a JSON file to download: profile, status and
    dates, language, second factor, sessions, devices, activity. No hash, token or code."""
    document = _export().export(bearer_token(), body["password"])
    return Response(
        json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False),
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="account-export.json"'},
    )
