"""Every error leaves as ``{error, message}`` (plus ``fields`` on a 422), never as HTML."""

from __future__ import annotations

import logging
import re

import pymongo.errors
import redis.exceptions
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from auth_service.domain import errors

log = logging.getLogger(__name__)


STATUS_OF = {
    errors.EmailTaken: 409,
    errors.InvalidCode: 400,
    errors.CodeExpired: 410,
    errors.TooManyAttempts: 429,
    errors.RateLimited: 429,
    errors.ServiceUnavailable: 503,
    errors.InvalidCredentials: 401,
    errors.EmailNotVerified: 403,
    errors.InvalidTokenError: 401,
    errors.PasswordUnchanged: 422,
    errors.NotFound: 404,
    errors.AccountPendingDeletion: 403,
    errors.FieldRefused: 422,
    errors.AccountDisabled: 403,
    errors.Forbidden: 403,
    errors.Conflict: 409,
}


# Where werkzeug's name for a status is not the snake_case code the API documents.
CODE_FOR_STATUS = {413: "payload_too_large"}


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra):
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def handle_auth_error(error: errors.AuthError):
    status = STATUS_OF.get(type(error), 400)
    details = dict(error.details)
    headers = {}
    retry_after = details.pop("retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, errors.InvalidTokenError):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return error_response(status, error.code, error.message, headers, **details)


def handle_http_exception(error: HTTPException):
    data = getattr(error, "data", None) or {}
    status = error.code or 500  # only werkzeug's bare HTTPException has no code
    if status == 422:
        return error_response(
            422, "validation_error", "The request has invalid fields.", fields=_field_messages(data.get("messages"))
        )
    if status >= 500:
        log.error("server error", extra={"status": status})
    headers = dict(data.get("headers") or {})
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(
        status, error_code(status, error.name), data.get("message") or error.description or error.name, headers
    )


def error_code(status: int, name: str) -> str:
    """The ``error`` field for an HTTP status that no use case names: ``Not Found`` -> ``not_found``."""
    return CODE_FOR_STATUS.get(status) or _snake(name)


# A store that is unreachable is the service being unavailable, not a bug in the request.
UNAVAILABLE_ERRORS = (pymongo.errors.ConnectionFailure, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def handle_dependency_down(error: Exception):
    """A store the request needs did not answer: a retryable 503, not a 500."""
    log.warning("dependency unavailable", extra={"error": type(error).__name__})
    return handle_auth_error(errors.ServiceUnavailable())


def install(app: Flask) -> None:
    """The contract's error body for every error an app's views raise."""
    app.register_error_handler(errors.AuthError, handle_auth_error)
    for dependency_error in UNAVAILABLE_ERRORS:
        app.register_error_handler(dependency_error, handle_dependency_down)
    app.register_error_handler(Exception, handle_unexpected)


def handle_unexpected(error: Exception):
    log.exception("unhandled error")
    return error_response(500, "internal_error", "Something went wrong on our side.")


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _field_messages(messages) -> dict[str, list[str]]:
    """Flatten webargs' ``{"json": {"field": [...]}}`` into ``{"field": [...]}``."""
    if isinstance(messages, dict) and set(messages) <= {"json", "query", "headers", "form"}:
        merged: dict = {}
        for location_messages in messages.values():
            if isinstance(location_messages, dict):
                merged.update(location_messages)
        messages = merged
    result: dict[str, list[str]] = {}
    for field, value in (messages or {}).items():
        if isinstance(value, list):
            result[str(field)] = [str(item) for item in value]
        elif isinstance(value, dict):
            result[str(field)] = [f"{key}: {item}" for key, item in value.items()]
        else:
            result[str(field)] = [str(value)]
    return result
