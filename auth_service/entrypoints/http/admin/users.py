"""``/admin/users``: find an account, look at it, and support's actions on it and its sessions."""

from __future__ import annotations

from datetime import UTC

import marshmallow as ma
from flask import g

from auth_service.domain.accounts import User, user_search
from auth_service.domain.admin_keys import SESSIONS_WRITE, USERS_READ, USERS_WRITE
from auth_service.domain.errors import FieldRefused
from auth_service.domain.paging import BadCursor, decode_cursor, encode_cursor
from auth_service.domain.sessions import Session
from auth_service.entrypoints.http.admin import schemas
from auth_service.entrypoints.http.admin.access import AdminBlueprint, admin_services
from auth_service.entrypoints.http.schemas import ErrorResponse
from auth_service.service_layer.flows.account_admin import AccountAdmin, AccountView

users = AdminBlueprint("admin_users", __name__, url_prefix="/admin/users", description="Accounts")

NOT_FOUND = "not_found: no such account"


def _admin() -> AccountAdmin:
    return admin_services("accounts")


def account_summary(user: User, now) -> dict:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "status": user.shown_status(now),
        "created_at": user.created_at,
    }


def _session(session: Session) -> dict:
    return {
        "id": session.family_id,
        "device": session.device,
        "ip": session.ip,
        "created_at": session.created_at,
        "last_used_at": session.last_used_at or session.created_at,
    }


def account_detail(view: AccountView) -> dict:
    user, now = view.user, view.now
    locked = user.locked_until is not None and user.locked_until > now
    disablement = user.disablement if user.disabled(now) else None
    last = view.last_activity
    return {
        **account_summary(user, now),
        "locale": user.locale,
        "email_deliverable": view.email_deliverable,
        "sessions": [_session(session) for session in view.sessions],
        "lock": {
            "locked": locked,
            "until": user.locked_until if locked else None,
            "failed_logins": user.failed_logins,
        },
        "second_factor": {
            "mfa": "email" if user.mfa_enabled else "off",
            "trusted_devices": sum(1 for device in user.trusted_devices if device.until > now),
        },
        "disabled": (
            {
                "reason": disablement.reason,
                "at": disablement.at,
                "by": disablement.by,
                "until": disablement.until,
            }
            if disablement is not None
            else None
        ),
        "delete_after": user.deletion.delete_after if user.pending_deletion and user.deletion else None,
        "last_activity": (
            {"type": last.type, "occurred_at": last.occurred_at, "ip": last.ip, "device": last.device}
            if last is not None
            else None
        ),
    }


@users.route("", methods=["GET"])
@users.requires(USERS_READ)
@users.arguments(schemas.UserSearchArgs(), location="query", unknown=ma.RAISE)
@users.response(200, schemas.UsersPage)
@users.alt_response(422, schema=ErrorResponse, description="validation_error (a cursor included)")
def search_users(args):
    """Accounts in address order: one address, or a prefix (``ada*``), of one status; page by ``next_cursor``."""
    after = None
    if args["cursor"] is not None:
        try:
            (after,) = decode_cursor(args["cursor"], 1)
        except BadCursor:
            raise FieldRefused("cursor", "Not a cursor this API handed out.") from None
    found, now = _admin().search(user_search(args["email"], args["status"], args["limit"], after))
    last = found[-1] if len(found) == args["limit"] else None
    return {
        "users": [account_summary(user, now) for user in found],
        "next_cursor": encode_cursor(last.email) if last is not None else None,
    }


@users.route("/<string:user_id>", methods=["GET"])
@users.requires(USERS_READ)
@users.response(200, schemas.UserDetail)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
def get_user(user_id):
    """The account with its sessions, lock, second factor, disable, deliverability and last activity."""
    return account_detail(_admin().account(user_id))


@users.route("/<string:user_id>/disable", methods=["POST"])
@users.requires(USERS_WRITE)
@users.arguments(schemas.DisableRequest())
@users.response(200, schemas.UserDetail)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
@users.alt_response(409, schema=ErrorResponse, description="conflict: until is not in the future")
@users.alt_response(422, schema=ErrorResponse, description="validation_error: no reason, or until over 365 days ahead")
def disable_user(body, user_id):
    """Disable: every session ends now; a right password answers 403 account_disabled; ``until`` ends it."""
    until = body["until"].astimezone(UTC) if body["until"] is not None else None
    admin = _admin()
    admin.disable(user_id, body["reason"], until)
    return account_detail(admin.account(user_id))


@users.route("/<string:user_id>/enable", methods=["POST"])
@users.requires(USERS_WRITE)
@users.response(200, schemas.UserDetail)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
def enable_user(user_id):
    """End a disable (an account that is not disabled is answered as it is)."""
    admin = _admin()
    admin.enable(user_id)
    return account_detail(admin.account(user_id))


@users.route("/<string:user_id>/unlock", methods=["POST"])
@users.requires(USERS_WRITE)
@users.response(200, schemas.UserDetail)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
def unlock_user(user_id):
    """End a failed-login lock and streak now (user.unlocked, reason admin)."""
    admin = _admin()
    admin.unlock(user_id)
    return account_detail(admin.account(user_id))


@users.route("/<string:user_id>/password-reset", methods=["POST"])
@users.requires(USERS_WRITE)
@users.response(202)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
def force_password_reset(user_id):
    """Every session ends, and a password-reset code is mailed to the account's address."""
    _admin().force_password_reset(user_id, g.get("request_id"))
    return None, 202


@users.route("/<string:user_id>/resend-verification", methods=["POST"])
@users.requires(USERS_WRITE)
@users.response(202)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
@users.alt_response(409, schema=ErrorResponse, description="conflict: the address is confirmed already")
def resend_verification(user_id):
    """Mail a new verification code to a pending account, whatever the address's resend cooldown."""
    _admin().resend_verification(user_id, g.get("request_id"))
    return None, 202


@users.route("/<string:user_id>", methods=["DELETE"])
@users.requires(USERS_WRITE)
@users.response(204)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
@users.alt_response(503, schema=ErrorResponse, description="service_unavailable: the erasure waits for the broker")
def delete_user(user_id):
    """Erase the account now, as at the end of a deletion's grace (user.deleted)."""
    _admin().delete(user_id)
    return None, 204


@users.route("/<string:user_id>/sessions", methods=["GET"])
@users.requires(USERS_READ)
@users.response(200, schemas.AdminSessions)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
def list_sessions(user_id):
    """The account's sessions that can still refresh, newest first."""
    return {"sessions": [_session(session) for session in _admin().sessions(user_id)]}


@users.route("/<string:user_id>/sessions", methods=["DELETE"])
@users.requires(SESSIONS_WRITE)
@users.response(204)
@users.alt_response(404, schema=ErrorResponse, description=NOT_FOUND)
def end_sessions(user_id):
    """End every session of the account: its tokens are refused at once."""
    _admin().end_sessions(user_id)
    return None, 204


@users.route("/<string:user_id>/sessions/<string:session_id>", methods=["DELETE"])
@users.requires(SESSIONS_WRITE)
@users.response(204)
@users.alt_response(404, schema=ErrorResponse, description="not_found: no such account, or no such live session")
def end_session(user_id, session_id):
    """End one session of the account: its tokens are refused at once."""
    _admin().end_session(user_id, session_id)
    return None, 204
