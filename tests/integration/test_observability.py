"""On this machine's RabbitMQ and Redis: one registration's story by its request id, and both /metrics."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from devtools.stack import LocalStack, delete_run, http_json, unique_names
from tests.integration.local_servers import servers_or_fail
from tests.observability import metric_samples

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@pytest.fixture
def stack(tmp_path):
    servers = servers_or_fail()
    names = unique_names("observability")
    running = LocalStack(tmp_path, {**servers, **names, "BCRYPT_ROUNDS": "4"})
    try:
        yield running.start()
    finally:
        running.stop()
        delete_run(servers["RABBITMQ_URL"], names, redis_url=servers["REDIS_URL"])


def log_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_lines(path, request_id: str, message: str, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        story = [line for line in log_lines(path) if line.get("request_id") == request_id]
        if any(line["message"] == message for line in story) or time.monotonic() > deadline:
            return story
        time.sleep(0.05)


def samples(url: str) -> dict[tuple[str, tuple], float]:
    status, headers, text = http_json("GET", url)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    return metric_samples(text)


def test_one_request_id_finds_a_registration_in_both_services_logs(stack, unique_email, tmp_path):
    email = unique_email("story")
    status, headers, _ = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD, "name": "Ada"})
    assert status == 201
    request_id = headers["X-Request-Id"]
    [mail] = stack.sink.wait_for(email, timeout=15)

    auth_story = wait_for_lines(tmp_path / "auth.log", request_id, "POST /auth/register 201")
    worker_story = wait_for_lines(tmp_path / "worker.log", request_id, "message handled")
    assert [(line["logger"], line["route"], line["status"]) for line in auth_story] == [
        ("auth_service.access", "/auth/register", 201)
    ]
    assert [line["message"] for line in worker_story] == ["code sent", "message handled"]
    assert worker_story[-1]["queue"] == stack.env["ACCOUNT_CREATION_QUEUE"]
    assert {line["service"] for line in auth_story + worker_story} == {"auth_service", "email_service"}

    # A client may choose the id; the confirmation's story comes back to auth through ACCOUNT_CONFIRMED_QUEUE.
    confirm_id = f"confirm-{request_id}"
    status, headers, _ = stack.call(
        "POST", "/auth/confirm", {"email": email, "code": mail.code}, {"X-Request-ID": confirm_id}
    )
    assert (status, headers["X-Request-Id"]) == (200, confirm_id)
    auth_confirm = wait_for_lines(tmp_path / "auth.log", confirm_id, "code verified")
    worker_confirm = wait_for_lines(tmp_path / "worker.log", confirm_id, "message handled")
    assert {"POST /auth/confirm 200", "code verified"} <= {line["message"] for line in auth_confirm}
    assert [line["message"] for line in worker_confirm] == ["code judged", "message handled"]
    assert worker_confirm[0]["verdict"] == "verified"

    # Every line of both files is one JSON object, and none holds the password or the code.
    for name in ("auth.log", "worker.log"):
        text = (tmp_path / name).read_text()
        assert log_lines(tmp_path / name)
        assert PASSWORD not in text and mail.code not in text


def test_both_services_serve_prometheus_metrics(stack, unique_email):
    email = unique_email("metrics")
    assert stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    [mail] = stack.sink.wait_for(email, timeout=15)
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": mail.code})[0] == 200

    auth = samples(f"{stack.base_url}/metrics")
    assert auth[("http_requests_total", (("method", "POST"), ("route", "/auth/register"), ("status", "201")))] == 1
    assert auth[("http_requests_total", (("method", "POST"), ("route", "/auth/confirm"), ("status", "200")))] == 1
    assert auth[("http_request_duration_seconds_count", (("method", "POST"), ("route", "/auth/confirm")))] == 1

    # The confirm's user.verified event leaves at the link thread's next tick (0.1 s), not with the answer:
    # until its publisher confirm comes it is counted pending; the worker's code.verified comes meanwhile.
    confirmed = (("outcome", "ack"), ("queue", stack.env["ACCOUNT_CONFIRMED_QUEUE"]))
    deadline = time.monotonic() + 10
    while (
        auth.get(("messages_consumed_total", confirmed)) != 1 or auth[("outbox_pending", ())] != 0
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
        auth = samples(f"{stack.base_url}/metrics")
    assert auth[("messages_consumed_total", confirmed)] == 1
    assert auth[("outbox_pending", ())] == 0

    assert len(stack.sink.wait_for(email, count=2, timeout=15)) == 2  # the code, then the welcome
    worker: Counter = Counter()
    for url in stack.worker_status_urls:  # one /metrics per worker process: the worker's counts are their sum
        worker.update(samples(f"{url}/metrics"))
    assert worker[("codes_issued_total", ())] == 1
    assert worker[("emails_sent_total", ())] == 2
    assert worker[("code_verdicts_total", (("verdict", "verified"),))] == 1
    for queue in ("ACCOUNT_CREATION_QUEUE", "CONFIRM_EMAIL_CODE_QUEUE", "ACCOUNT_NOTIFICATIONS_QUEUE"):
        assert worker[("messages_consumed_total", (("outcome", "ack"), ("queue", stack.env[queue])))] == 1


def test_the_worker_reports_its_dependencies(stack):
    status, _, body = http_json("GET", f"{stack.worker_status_url}/readyz")
    assert (status, body) == (200, {"status": "ready", "checks": {"redis": "up", "rabbitmq": "up", "smtp": "up"}})
    assert http_json("GET", f"{stack.worker_status_url}/healthz")[::2] == (200, {"status": "ok"})
    status, _, body = stack.call("GET", "/readyz")
    assert (status, body["checks"]) == (200, {"mongodb": "up", "rabbitmq": "up"})
