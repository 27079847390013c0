"""The worker's /metrics, /healthz and /readyz, its SMTP probe, and the container healthcheck script."""

from __future__ import annotations

import importlib.util

import pytest
from prometheus_client import CollectorRegistry, Counter

from devtools.mailsink import MailSink, free_port
from devtools.stack import http_json
from email_service import bootstrap
from email_service.adapters.mailer import SmtpProbe
from email_service.config import Settings
from email_service.entrypoints.status import StatusServer
from tests.unit.conftest import BASE_ENV, Clock
from tests.unit.test_stack_files import ROOT


@pytest.fixture
def status_server():
    servers = []

    def start(readiness, registry=None) -> str:
        server = StatusServer("127.0.0.1", 0, registry or CollectorRegistry(), readiness).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def test_metrics_and_liveness_are_served(status_server):
    registry = CollectorRegistry()
    Counter("emails_sent", "sent", registry=registry).inc(3)
    base = status_server(lambda: {}, registry)

    status, headers, text = http_json("GET", f"{base}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    assert "emails_sent_total 3.0" in text
    assert http_json("GET", f"{base}/healthz")[::2] == (200, {"status": "ok"})
    status, _, body = http_json("GET", f"{base}/nothing-here")
    assert status == 404 and body["error"] == "not_found"


def test_readiness_names_each_dependency_and_is_503_while_one_is_down(status_server):
    checks = {"redis": "up", "rabbitmq": "up", "smtp": "up"}
    base = status_server(lambda: dict(checks))

    assert http_json("GET", f"{base}/readyz")[::2] == (200, {"status": "ready", "checks": checks})
    checks["smtp"] = "down"
    status, _, body = http_json("GET", f"{base}/readyz")
    assert status == 503
    assert body == {"status": "unavailable", "checks": {"redis": "up", "rabbitmq": "up", "smtp": "down"}}


def test_a_taken_port_fails_at_construction():
    first = StatusServer("127.0.0.1", 0, CollectorRegistry(), dict)
    try:
        with pytest.raises(OSError):
            StatusServer("127.0.0.1", first.port, CollectorRegistry(), dict)
    finally:
        first.stop()


def test_smtp_probe_says_whether_a_server_answers():
    sink = MailSink().start()
    try:
        assert SmtpProbe("127.0.0.1", sink.port, timeout=2, cache_seconds=0)() is True
    finally:
        sink.stop()
    assert SmtpProbe("127.0.0.1", free_port(), timeout=2, cache_seconds=0)() is False


def test_smtp_probe_remembers_its_answer_for_a_few_seconds():
    clock = Clock(0.0)
    probes = []

    class CountingProbe(SmtpProbe):
        def _noop(self) -> bool:
            probes.append(clock())
            return True

    probe = CountingProbe("127.0.0.1", 1, cache_seconds=5, clock=clock)
    for _ in range(4):
        assert probe()
        clock.advance(2)
    assert probes == [0.0, 6.0]


def test_the_worker_reports_each_dependency_down_when_nothing_answers():
    closed = free_port()
    settings = Settings.from_env(
        {**BASE_ENV, "REDIS_URL": f"redis://127.0.0.1:{closed}/0", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(closed)}
    )
    worker = bootstrap.build_worker(settings)
    assert worker.readiness() == {"redis": "down", "rabbitmq": "down", "smtp": "down"}
    assert len(worker.consumers) == 2 * settings.worker_threads + 1  # one for the notifications
    assert not any(consumer.is_alive() for consumer in worker.consumers)


def load_healthcheck():
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "docker" / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_container_healthcheck_passes_only_on_200(status_server):
    healthcheck = load_healthcheck()
    checks = {"redis": "up"}
    base = status_server(lambda: dict(checks))
    assert healthcheck.main([f"{base}/readyz"]) == 0
    checks["redis"] = "down"
    assert healthcheck.main([f"{base}/readyz"]) == 1
    assert healthcheck.main([f"http://127.0.0.1:{free_port()}/readyz"]) == 1
    assert healthcheck.main(["http://example.com/readyz"]) == 2
