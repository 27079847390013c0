"""Logging set-up shared by both services: one JSON object per line.

Every record carries the service name, the request id of the work in hand and
the id of its trace (``trace_id``, common/tracing.py).
The id is bound per HTTP request in auth and per message in the worker (the
``x-request-id`` header), so one id finds a registration's whole story across
both services. A redacting filter blanks secret-looking extras as a second
line of defence: code must not log secrets in the first place.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO

from common.tracing import current_trace_id

REDACTED = "[redacted]"
SECRET_KEYS = frozenset({"password", "code", "token", "secret", "authorization", "access_token"})
SECRET_SUFFIXES = tuple(f"_{word}" for word in ("password", "token", "secret", "authorization"))

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def bind_request_id(request_id: str | None) -> None:
    """Tag every record logged from here on (in this thread or context) with ``request_id``."""
    _request_id.set(request_id)


def current_request_id() -> str | None:
    return _request_id.get()


# Keys are the code's own names for its extras, and a mapping's field names: few, asked on every line.
@functools.lru_cache(maxsize=1024)
def is_secret_key(key: str) -> bool:
    word = key.lower().replace("-", "_")
    return word in SECRET_KEYS or word.endswith(SECRET_SUFFIXES)


# Most extras are one of these: nothing inside them to blank, and no ABC check to find that out.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def redact(value):
    """``value`` with every secret-looking key of every nested mapping blanked."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Mapping):
        return {key: REDACTED if is_secret_key(str(key)) else redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        if not hasattr(record, "trace_id"):
            record.trace_id = current_trace_id()
        return True


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key in [key for key in record.__dict__ if key not in _STANDARD_ATTRIBUTES]:
            record.__dict__[key] = REDACTED if is_secret_key(key) else redact(record.__dict__[key])
        return True


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, built in one pass: ``level``, ``logger``, ``message``, ``service``,
    the record's extras, ``exc_info`` and ``stack_info`` when present, and ``time`` (ISO 8601, UTC).

    The same fields python-json-logger wrote, for a third of its cost: the worker logs twice per
    mail, and that formatter took a fifth of a mail's CPU."""

    def __init__(self, service: str):
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry["service"] = self._service
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        entry["time"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        return json.dumps(entry, default=_as_text)


def _as_text(value: object) -> str:
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


def json_formatter(service: str) -> logging.Formatter:
    return JsonLineFormatter(service)


def json_handler(service: str, stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter(service))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecretsFilter())
    return handler


def configure_logging(service: str, level: str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    handler = json_handler(service, stream)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # A line holds none of the caller's file, line, thread or process (JsonLineFormatter), so the records
    # do not look them up (the logging HOWTO's "Optimization" switches; measured in docs/performance.md,
    # "Earlier runs: 2026-12-07 night").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.getLogger("pika").setLevel(logging.WARNING)
    # At DEBUG urllib3 logs each request line; the breached-password check's would give its range prefix,
    # 20 bits of the password's SHA-1, beside the request id.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # Warnings and crashes of any thread become JSON lines too, not free text between them.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    return handler


def _log_uncaught(exc_type, exc_value, traceback) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc_value, traceback)
        return
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(exc_type, exc_value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else "?"
    logging.getLogger("uncaught").critical(
        "uncaught exception in a thread",
        exc_info=args.exc_value,  # carries its traceback
        extra={"thread_name": thread},
    )
