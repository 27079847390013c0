"""Prometheus metrics of both services, each process with its own registry."""

from __future__ import annotations

import time

import fakeredis
import pytest
from prometheus_client import CollectorRegistry

from auth_service.service_layer.outbox_relay import OutboxRelay
from common.messaging.consumer import Consumer, Result
from common.messaging.envelope import Outgoing
from common.messaging.messages import CodeRequested, CodeSubmitted, Purpose
from common.metrics import ConsumerMetrics
from email_service import bootstrap as worker_bootstrap
from email_service.adapters.metrics import PrometheusVerificationEvents
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.config import Settings as WorkerSettings
from email_service.ports import PermanentMailError, TransientMailError
from tests.fakes import RecordingMailer, as_delivered, topology_consuming
from tests.observability import deliver, metric_samples
from tests.unit.conftest import BASE_ENV
from tests.waiting import eventually

PASSWORD = "correct horse battery"


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return metric_samples(response.get_data(as_text=True))


def test_auth_counts_requests_by_route_and_status_and_times_them(system, unique_email):
    email = unique_email()
    client = system.client
    client.post("/auth/register", json={"email": email, "password": PASSWORD})
    [code] = system.codes_for(email)
    client.post("/auth/confirm", json={"email": email, "code": code})
    client.post("/auth/register", json={"email": email, "password": PASSWORD})  # confirmed: 409
    client.post("/auth/register", json={"email": "not an address", "password": PASSWORD})
    client.get(f"/auth/users/{email}")

    samples = scrape(client)
    register = (("method", "POST"), ("route", "/auth/register"))
    assert samples[("http_requests_total", (*register, ("status", "201")))] == 1
    assert samples[("http_requests_total", (*register, ("status", "409")))] == 1
    assert samples[("http_requests_total", (*register, ("status", "422")))] == 1
    assert samples[("http_request_duration_seconds_count", register)] == 3
    assert samples[("http_request_duration_seconds_sum", register)] > 0
    # An unknown path is one label value, whatever the path: scrapes cannot be blown up by probing.
    unmatched = (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
    assert samples[("http_requests_total", unmatched)] == 1
    assert not any(email in str(key) for key in samples)


def test_auth_reports_the_outbox_backlog(system, unique_email):
    system.broker.up = False
    system.client.post("/auth/register", json={"email": unique_email(), "password": PASSWORD})
    assert system.auth.registry.get_sample_value("outbox_pending") == 1
    system.broker.up = True
    system.clock.advance(120)
    assert system.auth.outbox.relay_due() == 2  # the code request and the user.registered event
    assert system.auth.registry.get_sample_value("outbox_pending") == 0


def test_each_system_has_its_own_registry(make_system, unique_email):
    first, second = make_system(), make_system()
    first.client.post("/auth/register", json={"email": unique_email(), "password": PASSWORD})
    labels = {"method": "POST", "route": "/auth/register", "status": "201"}
    assert first.auth.registry.get_sample_value("http_requests_total", labels) == 1
    assert second.auth.registry.get_sample_value("http_requests_total", labels) is None


def test_consumer_outcomes_are_counted_per_queue():
    registry = CollectorRegistry()
    outcomes = iter([Result.ack(), Result.retry("smtp down"), Result.dead_letter("malformed"), Result.ack()])
    consumer = Consumer(
        url="amqp://127.0.0.1:1/",
        queue="q.metrics",
        handler=lambda message, publisher: next(outcomes),
        topology=topology_consuming("q.metrics"),
        observe=ConsumerMetrics(registry, ["q.metrics"]).observe,
    )
    before = {
        o: registry.get_sample_value("messages_consumed_total", {"queue": "q.metrics", "outcome": o})
        for o in ("ack", "retry", "dead_letter")
    }
    assert before == {"ack": 0, "retry": 0, "dead_letter": 0}
    channel = None
    for _ in range(4):
        channel = deliver(consumer, Outgoing(type="t", body={}), channel)
    after = {
        o: registry.get_sample_value("messages_consumed_total", {"queue": "q.metrics", "outcome": o})
        for o in ("ack", "retry", "dead_letter")
    }
    assert after == {"ack": 2, "retry": 1, "dead_letter": 1}
    assert [queue for queue, _ in channel.published] == ["q.metrics.retry.2s", "q.metrics.dead"]


class Worker:
    def __init__(self, clock=time.time):
        self.settings = WorkerSettings.from_env({**BASE_ENV, "CODE_MAX_ATTEMPTS": "2"})
        self.registry = CollectorRegistry()
        self.mailer = RecordingMailer()
        self.handlers = worker_bootstrap.build_handlers(
            self.settings,
            store=RedisPendingCodes(fakeredis.FakeRedis(), self.settings.redis_key_prefix),
            mailer=self.mailer,
            events=PrometheusVerificationEvents(self.registry),
            clock=clock,
        )
        self.published = []

    def publish(self, queue, message):
        self.published.append((queue, message))

    def reply(self, reply_to, message):
        self.published.append((reply_to, message))

    def request_code(self, email: str, requested_at: float = 1.0) -> Result:
        message = CodeRequested(Purpose.VERIFY_EMAIL, "u-1", email, requested_at).outgoing()
        return self.handlers.code_requests(as_delivered(message), self)

    def submit(self, email: str, code: str) -> Result:
        message = CodeSubmitted(Purpose.VERIFY_EMAIL, email, code=code).outgoing()
        return self.handlers.code_submissions(as_delivered(message), self)

    def value(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def worker():
    return Worker()


def test_codes_issued_and_emails_sent_are_counted(worker, unique_email):
    worker.request_code(unique_email())
    worker.request_code(unique_email())
    assert worker.value("codes_issued_total") == 2
    assert worker.value("emails_sent_total") == 2
    assert worker.value("emails_failed_total", kind="transient") == 0


def test_the_delay_from_the_code_request_to_the_mail_is_observed_for_mails_sent_only(unique_email):
    worker = Worker(clock=lambda: 1_002.5)
    worker.request_code(unique_email(), requested_at=1_000.0)
    worker.mailer.fail_with = TransientMailError("451")
    worker.request_code(unique_email(), requested_at=1_001.0)
    assert worker.value("code_email_delay_seconds_count") == 1
    assert worker.value("code_email_delay_seconds_sum") == 2.5
    assert worker.value("code_email_delay_seconds_bucket", le="2.5") == 1
    assert worker.value("code_email_delay_seconds_bucket", le="1.0") == 0


def test_failed_emails_are_counted_by_kind(worker, unique_email):
    worker.mailer.fail_with = TransientMailError("451")
    assert worker.request_code(unique_email()).outcome.value == "retry"
    worker.mailer.fail_with = PermanentMailError("550")
    assert worker.request_code(unique_email()).outcome.value == "dead_letter"
    assert worker.value("emails_failed_total", kind="transient") == 1
    assert worker.value("emails_failed_total", kind="permanent") == 1
    assert worker.value("emails_sent_total") == 0


def test_each_verdict_is_counted(worker, unique_email):
    verified, burned = unique_email(), unique_email()
    worker.request_code(verified)
    worker.request_code(burned)
    good, burned_code = (sent["code"] for sent in worker.mailer.sent)

    worker.submit(verified, wrong(good))
    worker.submit(verified, good)
    worker.submit(unique_email(), "123456")
    worker.submit(burned, wrong(burned_code))
    worker.submit(burned, wrong(burned_code))  # the second wrong guess of two allowed burns the code

    verdicts = ("verified", "invalid_code", "code_expired", "too_many_attempts")
    assert {verdict: worker.value("code_verdicts_total", verdict=verdict) for verdict in verdicts} == {
        "verified": 1,
        "invalid_code": 2,
        "code_expired": 1,
        "too_many_attempts": 1,
    }


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_requests_over_the_quota_are_counted(unique_email):
    worker = Worker()
    email = unique_email()
    for attempt in range(worker.settings.max_codes_per_hour + 1):
        worker.request_code(email, requested_at=float(attempt + 1))
    assert worker.value("codes_issued_total") == worker.settings.max_codes_per_hour
    assert worker.value("code_requests_over_quota_total") == 1


def test_messages_the_outbox_relay_publishes_late_are_counted(system, unique_email):
    relayed = []
    system.broker.up = False
    system.client.post("/auth/register", json={"email": unique_email(), "password": PASSWORD})
    system.broker.up = True
    system.clock.advance(120)
    relay = OutboxRelay(system.auth.outbox, interval_seconds=0.01, on_relayed=relayed.append)
    relay.start()
    try:
        eventually(lambda: relayed, "the relay published what the request stored", timeout=5, every=0.01)
    finally:
        relay.stop()
        relay.join(5)
    assert relayed == [2]  # the code request and the user.registered event
    assert len(system.broker.sent_to(system.auth_settings.account_creation_queue)) == 1


def test_made_up_methods_share_one_label_whatever_their_length(system):
    for n in range(50):
        system.client.open("/auth/login", method=f"M{n:03d}" + "X" * 2000)
    samples = scrape(system.client)
    methods = {dict(labels)["method"] for name, labels in samples if name.startswith("http_request")}
    assert methods == {"other"}  # the scrape itself is counted after it is answered
    other = (("method", "other"), ("route", "<unmatched>"), ("status", "405"))
    assert samples[("http_requests_total", other)] == 50
