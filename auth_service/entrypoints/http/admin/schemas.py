"""The admin API's request and response schemas; its OpenAPI document is generated from these."""

from __future__ import annotations

from marshmallow import fields, validate

from auth_service.domain.accounts import ADMIN_STATUSES
from auth_service.domain.paging import CURSOR_MAX_LENGTH, DEFAULT_PAGE, MAX_PAGE
from auth_service.entrypoints.http.schemas import Schema, StrictSchema, Text
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


class AuditEntry(Schema):
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


class AuditResponse(Schema):
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


class UserSummary(Schema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"description": ", ".join(ADMIN_STATUSES)})
    created_at = fields.DateTime(required=True)


class UsersPage(Schema):
    users = fields.List(fields.Nested(UserSummary), required=True)
    next_cursor = fields.String(allow_none=True, required=True, metadata={"description": "null on the last page"})


class AdminSession(Schema):
    id = fields.String(required=True)
    device = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(required=True)


class AdminSessions(Schema):
    sessions = fields.List(fields.Nested(AdminSession), required=True)


class Lock(Schema):
    locked = fields.Boolean(required=True)
    until = fields.DateTime(allow_none=True)
    failed_logins = fields.Integer(required=True, metadata={"description": "failed logins in a row"})


class SecondFactor(Schema):
    mfa = fields.String(required=True, metadata={"description": "email or off"})
    trusted_devices = fields.Integer(required=True)


class DisabledState(Schema):
    reason = fields.String(required=True)
    at = fields.DateTime(required=True)
    by = fields.String(allow_none=True, metadata={"description": "the admin key's name"})
    until = fields.DateTime(allow_none=True)


class LastActivity(Schema):
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


class IntrospectResponse(Schema):
    active = fields.Boolean(required=True)
    sub = fields.String()
    sid = fields.String()
    exp = fields.Integer()
    iat = fields.Integer()
    email = fields.String()
    status = fields.String()


class WebhookCreate(StrictSchema):
    url = Text(required=True, validate=validate.Length(1, 2000), metadata={"description": "http or https"})
    events = fields.List(
        Text(validate=validate.Length(1, 100)),
        required=True,
        validate=validate.Length(1, 32),
        metadata={"description": "event names or patterns: user.verified, user.*, user.# (AMQP topic notation)"},
    )
    description = Text(load_default=None, validate=validate.Length(0, 500))


class Webhook(Schema):
    id = fields.String(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    description = fields.String(allow_none=True)
    enabled = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)
    disabled_at = fields.DateTime(allow_none=True)
    failing_since = fields.DateTime(
        allow_none=True, metadata={"description": "since when every attempt failed (none after a success)"}
    )


class WebhookCreated(Webhook):
    secret = fields.String(required=True, metadata={"description": "whsec_...: shown this once"})


class WebhookList(Schema):
    webhooks = fields.List(fields.Nested(Webhook), required=True)


class WebhookSecret(Schema):
    secret = fields.String(required=True, metadata={"description": "the new whsec_... secret: shown this once"})


class DeliveryArgs(StrictSchema):
    status = Text(
        load_default=None,
        validate=validate.OneOf(["pending", "retrying", "delivered", "failed", "refused"]),
    )


class DeliveryAttempt(Schema):
    at = fields.DateTime(required=True)
    outcome = fields.String(
        required=True, metadata={"description": "success, http_error, redirect, timeout, connection_error, refused"}
    )
    status_code = fields.Integer(allow_none=True)
    duration_ms = fields.Integer(required=True)
    error = fields.String(allow_none=True)


class Delivery(Schema):
    id = fields.String(required=True)
    event_id = fields.String(required=True, metadata={"description": "also the webhook-id header"})
    event_type = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "pending, retrying, delivered, failed, refused"})
    created_at = fields.DateTime(required=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    attempts = fields.List(fields.Nested(DeliveryAttempt), required=True)


class DeliveryList(Schema):
    deliveries = fields.List(fields.Nested(Delivery), required=True)


class Accepted(Schema):
    status = fields.String(required=True)
