"""``GET /admin/audit``: accounts' security activity and every admin request, newest first, page by page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import marshmallow as ma

from auth_service.domain.activity import AuditPosition, AuditQuery
from auth_service.domain.admin_keys import AUDIT_READ
from auth_service.domain.errors import FieldRefused
from auth_service.domain.paging import BadCursor, decode_cursor, encode_cursor
from auth_service.entrypoints.http.admin import schemas
from auth_service.entrypoints.http.admin.access import AdminBlueprint, admin_services
from auth_service.entrypoints.http.schemas import ErrorResponse
from auth_service.service_layer.activity import ActivityLog

NOT_A_CURSOR = "Not a cursor this API handed out."

audit = AdminBlueprint("admin_audit", __name__, url_prefix="/admin", description="The audit trail")


def _activity() -> ActivityLog:
    return admin_services("activity")


@audit.route("/audit", methods=["GET"])
@audit.requires(AUDIT_READ)
@audit.arguments(schemas.AuditArgs(), location="query", unknown=ma.RAISE)
@audit.response(200, schemas.AuditResponse)
@audit.alt_response(422, schema=ErrorResponse, description="validation_error (a cursor included)")
def read_audit(args):
    """Accounts' activity and admin requests (with the key's name), newest first; filter by account and type."""
    after = _position(args["cursor"]) if args["cursor"] is not None else None
    activity = _activity()
    entries = activity.audit(
        AuditQuery(
            since=activity.retention_start(),
            limit=args["limit"],
            user_id=args["user_id"],
            type=args["type"],
            after=after,
        )
    )
    last = entries[-1] if len(entries) == args["limit"] else None
    return {
        "entries": [
            {
                "id": entry.id,
                "type": entry.type,
                "occurred_at": entry.occurred_at,
                "user_id": entry.user_id,
                "subject": entry.subject,
                "actor": entry.actor,
                "ip": entry.ip,
                "device": entry.device,
                "status": entry.status,
            }
            for entry in entries
        ],
        "next_cursor": encode_cursor(last.occurred_at.isoformat(), last.id) if last is not None else None,
    }


def _position(cursor: str) -> AuditPosition:
    try:
        moment, entry_id = decode_cursor(cursor, 2)
        occurred_at = datetime.fromisoformat(moment)
    except (BadCursor, ValueError):
        raise FieldRefused("cursor", NOT_A_CURSOR) from None
    if occurred_at.tzinfo is None or occurred_at.utcoffset() != timedelta(0):
        raise FieldRefused("cursor", NOT_A_CURSOR)
    return AuditPosition(occurred_at.astimezone(UTC), entry_id)
