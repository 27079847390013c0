"""Request and response schemas; the OpenAPI document is generated from these."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from auth_service.domain.abuse import CAPTCHA_TOKEN_MAX_LENGTH
from auth_service.domain.accounts import EMAIL_MAX_LENGTH, NAME_MAX_LENGTH, name_problem, password_problem
from auth_service.domain.addresses import AddressRefused, canonical_address
from auth_service.domain.challenges import CHALLENGE_MAX_LENGTH
from common.locales import LOCALE_MAX_LENGTH, SHIPPED_LOCALES, is_language_tag


class Schema(ma.Schema):
    """The base of every schema of the API.

    flask-smorest deep-copies a view's documentation at each of its decorators and again for each
    method, the schema instances in it included: about 4 MiB of copies of every field at start, which
    nothing reads but the OpenAPI document and which stay resident for the life of the process. A
    schema is not changed once it is built (marshmallow copies the class's fields into the instance
    then), so a copy of one can be the schema itself; the documents come out byte for byte the same
    (tests/unit/test_schema_copies.py).
    """

    def __deepcopy__(self, memo: dict) -> Schema:
        return self


class StrictSchema(Schema):
    class Meta:
        unknown = ma.RAISE


class Text(fields.String):
    """A string that is valid Unicode text: JSON can smuggle in lone surrogates, which no store accepts."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ma.ValidationError("Not valid Unicode text.") from None
        return text


class Address(fields.String):
    """An address an account may have (domain/addresses.py), in its stored form: trimmed, lower-cased."""

    def __init__(self, **kwargs):
        super().__init__(metadata={"format": "email", **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            return canonical_address(raw)
        except AddressRefused as refused:
            raise ma.ValidationError(str(refused)) from None


def _check_password(value: str) -> None:
    problem = password_problem(value)
    if problem:
        raise ma.ValidationError(problem)


def _check_name(value: str) -> None:
    problem = name_problem(value)
    if problem:
        raise ma.ValidationError(problem)


def _check_locale(value: str) -> None:
    if not is_language_tag(value):
        raise ma.ValidationError("Must be a BCP 47 language tag, such as 'pt-BR'.")


def _email():
    return Address(
        required=True,
        validate=validate.Length(max=EMAIL_MAX_LENGTH),
        metadata={
            "description": "plain ASCII local@domain: no quoted local part, no IP literal, a domain of two labels "
            "or more; trimmed and lower-cased",
            "example": "ada@example.com",
        },
    )


def _code():
    return fields.String(
        required=True,
        validate=validate.Regexp(r"\A[0-9]{6}\Z", error="Code must be 6 digits (0-9)."),
        metadata={"example": "123456"},
    )


def new_password():
    """A password being chosen: the rules of register, for every flow that sets one."""
    return Text(
        required=True,
        validate=_check_password,
        metadata={
            "description": "8 to 72 bytes of UTF-8, not one of the 10,000 most common passwords, "
            "not one repeated or sequential pattern",
            "example": "correct horse battery",
        },
    )


def _captcha_token():
    return Text(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=CAPTCHA_TOKEN_MAX_LENGTH),
        metadata={
            "description": "with CAPTCHA_PROVIDER set, required: the token the Turnstile or hCaptcha widget gave the "
            "app (docs/api.md); each token works once",
        },
    )


def _password_given():
    # A password being proved, not chosen: only its size is bounded; one no account can have is
    # simply wrong (401), as at login.
    return Text(required=True, validate=validate.Length(min=1, max=1024))


class RegisterRequest(StrictSchema):
    email = _email()
    password = new_password()
    name = Text(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(max=NAME_MAX_LENGTH), _check_name],
        metadata={"example": "Ada"},
    )
    locale = fields.String(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(max=LOCALE_MAX_LENGTH), _check_locale],
        metadata={
            "description": "the language of the account's emails, a BCP 47 tag; without one (or one no language "
            f"shipped serves) the best match of Accept-Language, else DEFAULT_LOCALE. Shipped: "
            f"{', '.join(SHIPPED_LOCALES)}",
            "example": "pt-BR",
        },
    )
    captcha_token = _captcha_token()


class ConfirmRequest(StrictSchema):
    email = _email()
    code = _code()


class ForgotPasswordRequest(StrictSchema):
    email = _email()
    captcha_token = _captcha_token()


class ResetPasswordRequest(StrictSchema):
    email = _email()
    code = _code()
    new_password = new_password()


class EmailChangeRequest(StrictSchema):
    new_email = _email()
    password = _password_given()


class EmailConfirmRequest(StrictSchema):
    code = _code()


class VerifyLinkArgs(Schema):
    """The link's token. Checked by the view, not here: a bad link gets an HTML page, not a JSON 422."""

    class Meta:
        unknown = ma.EXCLUDE

    token = fields.String(load_default=None, metadata={"description": "the token of the verification email's link"})


class ResendRequest(StrictSchema):
    email = _email()
    captcha_token = _captcha_token()


class LoginRequest(StrictSchema):
    email = _email()
    password = _password_given()


class RefreshTokenRequest(StrictSchema):
    refresh_token = Text(
        required=True,
        validate=validate.Length(min=1, max=512),
        metadata={"description": "the refresh token of the last login or refresh"},
    )


class PasswordChangeRequest(StrictSchema):
    current_password = _password_given()
    new_password = new_password()


class StrictBoolean(fields.Boolean):
    """JSON true or false only: a switch that "yes", 1 or "0" could flip is read as nobody meant it."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class MfaRequest(StrictSchema):
    enabled = StrictBoolean(required=True, metadata={"description": "true: ask for an emailed code at sign-in"})
    password = _password_given()


class LoginVerifyRequest(StrictSchema):
    challenge = Text(
        required=True,
        validate=validate.Length(min=1, max=CHALLENGE_MAX_LENGTH),
        metadata={"description": "the challenge of the login's 202 answer"},
    )
    code = _code()


class LoginCodeRequest(StrictSchema):
    email = _email()
    captcha_token = _captcha_token()


class LoginCodeVerifyRequest(StrictSchema):
    email = _email()
    code = _code()


class MfaResponse(Schema):
    mfa = fields.String(required=True, validate=validate.OneOf(["email", "off"]), metadata={"enum": ["email", "off"]})


class MfaChallengeResponse(Schema):
    mfa_required = fields.Boolean(required=True, metadata={"enum": [True]})
    challenge = fields.String(
        required=True,
        metadata={"description": "opaque, single use, for this login attempt on this device; send it with the code"},
    )


class RegisteredResponse(Schema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    status = fields.String(required=True)


class ConfirmResponse(Schema):
    # No account id: confirm answers for an address whoever asks, so it gives nothing more away.
    email = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "verified, or pending_verification on 202"})


class StatusResponse(Schema):
    status = fields.String(required=True)


class MailReportResponse(Schema):
    status = fields.String(
        required=True,
        metadata={"description": "ok (a report read), subscribed (an SNS subscription confirmed) or ignored"},
    )
    suppressed = fields.Integer(metadata={"description": "addresses this report put on the suppression list"})


class AcceptedResponse(Schema):
    status = fields.String(required=True)
    message = fields.String(required=True)


class TokenResponse(Schema):
    access_token = fields.String(required=True, metadata={"description": "JWT (HS256) for the Bearer header"})
    refresh_token = fields.String(
        required=True, metadata={"description": "opaque; works once, at POST /auth/token/refresh"}
    )
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds the access token is valid"})


class ProfileResponse(Schema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(allow_none=True)
    status = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    locale = fields.String(required=True, metadata={"description": "the language of the account's emails"})
    email_deliverable = fields.Boolean(
        required=True,
        metadata={"description": "false while the address is on the suppression list (it bounced or complained)"},
    )


class SessionResponse(Schema):
    id = fields.String(required=True, metadata={"description": "the session's id, for DELETE /auth/sessions/{id}"})
    device = fields.String(
        required=True, metadata={"description": "X-Device-Name at login, else read from the User-Agent"}
    )
    ip = fields.String(allow_none=True, metadata={"description": "the address of the last login or refresh"})
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(required=True, metadata={"description": "the last login or refresh"})
    current = fields.Boolean(required=True, metadata={"description": "the session of the access token used (its sid)"})


class SessionsResponse(Schema):
    sessions = fields.List(fields.Nested(SessionResponse), required=True)


class PasswordRequest(StrictSchema):
    password = _password_given()


class DeletionResponse(Schema):
    status = fields.String(
        required=True,
        metadata={"description": "pending_deletion; deleted when ACCOUNT_DELETION_GRACE_SECONDS is 0; pending on 202"},
    )
    delete_after = fields.DateTime(allow_none=True, metadata={"description": "when the account is erased"})


class ExportResponse(Schema):
    """The export's top-level groups; each holds the stored fields under readable names."""

    class Meta:
        unknown = ma.INCLUDE

    about_this_file = fields.String(required=True)
    exported_at = fields.DateTime(required=True)


class ActivityEntryResponse(Schema):
    type = fields.String(
        required=True,
        metadata={
            "description": "an account event's routing key (user.locked, ...) or user.login, "
            "user.login_failed, user.mfa_enabled, user.mfa_disabled, user.deletion_requested, user.deletion_cancelled"
        },
    )
    occurred_at = fields.DateTime(required=True)
    ip = fields.String(allow_none=True, metadata={"description": "null for what no request did (a lock's end)"})
    device = fields.String(allow_none=True)


class ActivityResponse(Schema):
    events = fields.List(fields.Nested(ActivityEntryResponse), required=True)


# The confirmation pages are HTML; the document describes them as text.
HTML_PAGE = {"type": "string", "description": "an HTML page"}


class ErrorResponse(Schema):
    error = fields.String(required=True, metadata={"description": "stable snake_case code"})
    message = fields.String(required=True)
    field_errors = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "only on 422: field name -> messages"},
    )
    attempts_left = fields.Integer(metadata={"description": "only on invalid_code"})


class HealthResponse(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())
