"""The admin API's request and response schemas; its OpenAPI document is generated from these."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from auth_service.domain.paging import CURSOR_MAX_LENGTH, DEFAULT_PAGE, MAX_PAGE
from auth_service.entrypoints.http.schemas import StrictSchema, Text

ID_MAX_LENGTH = 64
TYPE_MAX_LENGTH = 64


def page_limit() -> fields.Integer:
    return fields.Integer(
        load_default=DEFAULT_PAGE,
        validate=validate.Range(1, MAX_PAGE),
        metadata={"description": f"entries per page, at most {MAX_PAGE}"},
    )


def cursor() -> Text:
    return Text(
        load_default=None,
        validate=validate.Length(1, CURSOR_MAX_LENGTH),
        metadata={"description": "the previous page's next_cursor"},
    )


class AuditArgs(StrictSchema):
    user_id = Text(
        load_default=None,
        validate=validate.Length(1, ID_MAX_LENGTH),
        metadata={"description": "one account: its own activity and the admin requests about it"},
    )
    type = Text(
        load_default=None,
        validate=validate.Length(1, TYPE_MAX_LENGTH),
        metadata={"description": "one type: user.locked, user.login, admin.admin_users.disable_user, ..."},
    )
    limit = page_limit()
    cursor = cursor()


class AuditEntry(ma.Schema):
    id = fields.String(required=True)
    type = fields.String(
        required=True,
        metadata={"description": "an account's activity (user.*) or an admin request (admin.<endpoint>)"},
    )
    occurred_at = fields.DateTime(required=True)
    user_id = fields.String(allow_none=True, metadata={"description": "the account whose own activity this is"})
    subject = fields.String(allow_none=True, metadata={"description": "the account an admin request was about"})
    actor = fields.String(allow_none=True, metadata={"description": "the admin key's name, for what an admin did"})
    ip = fields.String(allow_none=True)
    device = fields.String(allow_none=True)
    status = fields.Integer(allow_none=True, metadata={"description": "an admin request's HTTP status"})


class AuditResponse(ma.Schema):
    entries = fields.List(fields.Nested(AuditEntry), required=True)
    next_cursor = fields.String(allow_none=True, required=True, metadata={"description": "null on the last page"})
