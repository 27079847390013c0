"""The admin API's request and response schemas; its OpenAPI document is generated from these."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from auth_service.domain.accounts import ADMIN_STATUSES
from auth_service.domain.paging import CURSOR_MAX_LENGTH, DEFAULT_PAGE, MAX_PAGE
from auth_service.entrypoints.http.schemas import StrictSchema, Text
from common.messaging.messages import DISABLE_REASON_MAX_LENGTH

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


class UserSearchArgs(StrictSchema):
    email = Text(
        load_default=None,
        validate=validate.Length(1, 255),
        metadata={"description": "an address (exact), or the start of addresses followed by * (prefix): ada*"},
    )
    status = fields.String(load_default=None, validate=validate.OneOf(ADMIN_STATUSES))
    limit = page_limit()
    cursor = cursor()


class UserSummary(ma.Schema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"description": ", ".join(ADMIN_STATUSES)})
    created_at = fields.DateTime(required=True)


class UsersPage(ma.Schema):
    users = fields.List(fields.Nested(UserSummary), required=True)
    next_cursor = fields.String(allow_none=True, required=True, metadata={"description": "null on the last page"})


class AdminSession(ma.Schema):
    id = fields.String(required=True)
    device = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(required=True)


class AdminSessions(ma.Schema):
    sessions = fields.List(fields.Nested(AdminSession), required=True)


class Lock(ma.Schema):
    locked = fields.Boolean(required=True)
    until = fields.DateTime(allow_none=True)
    failed_logins = fields.Integer(required=True, metadata={"description": "failed logins in a row"})


class SecondFactor(ma.Schema):
    mfa = fields.String(required=True, metadata={"description": "email or off"})
    trusted_devices = fields.Integer(required=True)


class DisabledState(ma.Schema):
    reason = fields.String(required=True)
    at = fields.DateTime(required=True)
    by = fields.String(allow_none=True, metadata={"description": "the admin key's name"})
    until = fields.DateTime(allow_none=True)


class LastActivity(ma.Schema):
    type = fields.String(required=True)
    occurred_at = fields.DateTime(required=True)
    ip = fields.String(allow_none=True)
    device = fields.String(allow_none=True)


class UserDetail(UserSummary):
    locale = fields.String(allow_none=True)
    email_deliverable = fields.Boolean(required=True)
    sessions = fields.List(fields.Nested(AdminSession), required=True)
    lock = fields.Nested(Lock, required=True)
    second_factor = fields.Nested(SecondFactor, required=True)
    disabled = fields.Nested(DisabledState, allow_none=True, required=True)
    delete_after = fields.DateTime(allow_none=True, metadata={"description": "pending_deletion: when it is erased"})
    last_activity = fields.Nested(LastActivity, allow_none=True, required=True)


class DisableRequest(StrictSchema):
    reason = Text(required=True, validate=validate.Length(1, DISABLE_REASON_MAX_LENGTH))
    until = fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        metadata={"description": "RFC 3339 with a time zone; the account enables itself then (unset: until enabled)"},
    )


class IntrospectRequest(StrictSchema):
    token = fields.String(required=True, validate=validate.Length(1, 4096))


class IntrospectResponse(ma.Schema):
    active = fields.Boolean(required=True)
    sub = fields.String()
    sid = fields.String()
    exp = fields.Integer()
    iat = fields.Integer()
    email = fields.String()
    status = fields.String()
