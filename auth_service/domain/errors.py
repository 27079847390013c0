"""What can go wrong for a caller, named as the contract names it (the ``error`` field)."""

from __future__ import annotations


class AuthError(Exception):
    code = "error"
    message = "Request failed."

    def __init__(self, message: str | None = None, **details):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class EmailTaken(AuthError):
    code = "email_taken"
    message = "An account with this email address already exists."


class InvalidCode(AuthError):
    code = "invalid_code"
    message = "The code is not correct."


class CodeExpired(AuthError):
    code = "code_expired"
    message = "There is no valid code for this address. Ask for a new one."


class TooManyAttempts(AuthError):
    code = "too_many_attempts"
    message = "Too many wrong codes. Ask for a new one."


class RateLimited(AuthError):
    code = "rate_limited"
    message = "Too many requests. Try again later."


class ServiceUnavailable(AuthError):
    code = "service_unavailable"
    message = "The service is temporarily unavailable. Try again shortly."
    retry_after_seconds = 5

    def __init__(self, message: str | None = None, **details):
        super().__init__(message, **{"retry_after": self.retry_after_seconds, **details})


class InvalidCredentials(AuthError):
    code = "invalid_credentials"
    message = "Email or password is incorrect."


class EmailNotVerified(AuthError):
    code = "email_not_verified"
    message = "Confirm your email address before logging in."


class InvalidTokenError(AuthError):
    code = "invalid_token"
    message = "The access token is missing, malformed or expired."


class AccountPendingDeletion(AuthError):
    code = "account_pending_deletion"
    message = (
        "This account is being deleted. Use the link in the email about the deletion to keep it; "
        "after that, it is gone."
    )


class NotFound(AuthError):
    code = "not_found"
    message = "Not found."


class AccountDisabled(AuthError):
    code = "account_disabled"
    message = "This account has been disabled. Contact support."


class Forbidden(AuthError):
    """An admin key without the scope the request needs."""

    code = "forbidden"
    message = "This admin key does not have the scope this request needs."


class Conflict(AuthError):
    code = "conflict"
    message = "The account is not in a state that allows this."


class PasswordUnchanged(AuthError):
    """A 422 like a schema's: the new password is the current one."""

    code = "validation_error"
    message = "The request has invalid fields."

    def __init__(self):
        super().__init__(fields={"new_password": ["The new password must differ from the current one."]})


class CaptchaRequired(AuthError):
    code = "captcha_required"
    message = "Complete the CAPTCHA and send its token as captcha_token."


class CaptchaInvalid(AuthError):
    code = "captcha_invalid"
    message = "The CAPTCHA was not passed, or its token was used or has expired. Complete it again."


class FieldRefused(AuthError):
    """A 422 like a schema's, for a rule that needs more than the field itself (a breach list, a domain list)."""

    code = "validation_error"
    message = "The request has invalid fields."

    def __init__(self, field: str, reason: str):
        super().__init__(fields={field: [reason]})
