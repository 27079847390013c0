"""JSON log lines, the request id that follows a registration, and what never reaches a log."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading

import fakeredis

from common import logs
from common.messaging.envelope import Outgoing
from common.messaging.messages import CodeRequested, Purpose
from email_service import bootstrap as worker_bootstrap
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.config import Settings as WorkerSettings
from tests.fakes import RecordingMailer
from tests.observability import deliver, json_log_lines
from tests.unit.conftest import BASE_ENV

PASSWORD = "correct horse battery"


def test_a_record_is_one_json_object_with_service_level_logger_message_and_extras():
    with json_log_lines("auth_service") as lines:
        logging.getLogger("some.module").warning("disk %s full", "/var", extra={"percent": 97, "mount": "/var"})
    [line] = lines
    assert line["service"] == "auth_service"
    assert line["level"] == "WARNING"
    assert line["logger"] == "some.module"
    assert line["message"] == "disk /var full"
    assert line["percent"] == 97 and line["mount"] == "/var"
    assert line["request_id"] is None
    assert line["time"].endswith("+00:00")


def test_an_exception_stays_inside_its_one_line():
    with json_log_lines() as lines:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logging.getLogger("x").exception("failed")
    [line] = lines
    assert "ValueError: boom" in line["exc_info"]


def test_a_bound_request_id_tags_records_of_this_context_only():
    seen_in_other_thread = []
    with json_log_lines() as lines:
        logs.bind_request_id("req-0123456789")
        try:
            logging.getLogger("x").info("inside")
            thread = threading.Thread(target=lambda: logging.getLogger("x").info("elsewhere"))
            thread.start()
            thread.join()
            seen_in_other_thread.append(logs.current_request_id())
        finally:
            logs.bind_request_id(None)
        logging.getLogger("x").info("after")
    assert [(line["message"], line["request_id"]) for line in lines] == [
        ("inside", "req-0123456789"),
        ("elsewhere", None),
        ("after", None),
    ]


def test_secret_looking_extras_are_redacted_at_any_depth():
    with json_log_lines() as lines:
        logging.getLogger("x").info(
            "careless",
            extra={
                "password": PASSWORD,
                "code": "123456",
                "smtp_password": "hunter2-hunter2",
                "Authorization": "Bearer abc.def.ghi",
                "details": {"access_token": "abc.def.ghi", "jwt_secret": "s" * 40, "attempts": 2},
                "attempts": [{"token": "t0k3n"}],
                "status": 201,
                "user_id": "u1",
            },
        )
    [line] = lines
    for key in ("password", "code", "smtp_password", "Authorization"):
        assert line[key] == logs.REDACTED
    assert line["details"] == {"access_token": logs.REDACTED, "jwt_secret": logs.REDACTED, "attempts": 2}
    assert line["attempts"] == [{"token": logs.REDACTED}]
    assert line["status"] == 201 and line["user_id"] == "u1"
    text = json.dumps(line)
    for secret in (PASSWORD, "123456", "hunter2", "abc.def.ghi", "t0k3n"):
        assert secret not in text


def test_each_http_request_gets_one_access_line_with_its_id_and_never_its_body(system, unique_email):
    email = unique_email()
    with json_log_lines("auth_service") as lines:
        created = system.client.post(
            "/auth/register",
            json={"email": email, "password": PASSWORD},
            headers={"X-Request-ID": "client-chosen-id-42"},
        )
        unverified = system.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201 and unverified.status_code == 403
    access = [line for line in lines if line["logger"] == "auth_service.access"]
    assert [(line["method"], line["route"], line["status"]) for line in access] == [
        ("POST", "/auth/register", 201),
        ("POST", "/auth/login", 403),
    ]
    assert access[0]["request_id"] == "client-chosen-id-42"
    assert access[1]["request_id"] == unverified.headers["X-Request-ID"] != "client-chosen-id-42"
    assert all(line["duration_ms"] >= 0 for line in access)
    [code] = system.codes_for(email)
    everything = "\n".join(json.dumps(line) for line in lines)
    assert PASSWORD not in everything and code not in everything


def test_probes_are_logged_at_debug_so_they_do_not_drown_the_requests(system):
    with json_log_lines(level=logging.INFO) as lines:
        assert system.client.get("/healthz").status_code == 200
        assert system.client.get("/metrics").status_code == 200
    assert [line for line in lines if line["logger"] == "auth_service.access"] == []


def test_the_request_id_travels_on_the_message_to_the_worker(system, unique_email):
    system.client.post(
        "/auth/register",
        json={"email": unique_email(), "password": PASSWORD},
        headers={"X-Request-ID": "registration-story-1"},
    )
    [sent] = system.broker.sent_to(system.auth_settings.account_creation_queue)
    assert sent.request_id == "registration-story-1"
    assert sent.properties().headers == {"x-request-id": "registration-story-1"}


def worker_consumers():
    settings = WorkerSettings.from_env({**BASE_ENV, "WORKER_THREADS": "1"})
    store = RedisPendingCodes(fakeredis.FakeRedis(), settings.redis_key_prefix)
    mailer = RecordingMailer()
    handlers = worker_bootstrap.build_handlers(settings, store=store, mailer=mailer)
    return worker_bootstrap.build_consumers(settings, handlers), mailer


def code_request(email: str, request_id: str | None) -> Outgoing:
    return CodeRequested(Purpose.VERIFY_EMAIL, "u-1", email, 1.0).outgoing(request_id=request_id)


def test_the_worker_logs_under_the_request_id_of_the_message_in_hand(unique_email):
    [code_requests, _, _], mailer = worker_consumers()
    with json_log_lines("email_service") as lines:
        channel = deliver(code_requests, code_request(unique_email(), "registration-story-2"))
        deliver(code_requests, code_request(unique_email(), None), channel)
        logging.getLogger("x").info("between messages")
    assert channel.acked == [1, 2]
    handled = [line for line in lines if line["message"] == "code sent"]
    assert [line["request_id"] for line in handled] == ["registration-story-2", None]
    assert lines[-1]["request_id"] is None
    assert all(sent["code"] not in json.dumps(lines) for sent in mailer.sent)


def test_configure_logging_sends_warnings_and_uncaught_thread_errors_through_json(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    stream = io.StringIO()
    try:
        logs.configure_logging("email_service", "INFO", stream)
        thread = threading.Thread(target=lambda: 1 / 0, name="doomed")
        thread.start()
        thread.join()
        import warnings

        warnings.warn("old api", DeprecationWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["level"] for line in lines] == ["CRITICAL", "WARNING"]
    assert lines[0]["thread_name"] == "doomed" and "ZeroDivisionError" in lines[0]["exc_info"]
    assert "old api" in lines[1]["message"]
    assert {line["service"] for line in lines} == {"email_service"}
