"""The pieces behind "no registration lost", each on its own (the fault tests prove them together)."""

from __future__ import annotations

import time

import fakeredis
import pika
import pymongo.errors
import pytest
import redis

from common.messaging import consumer as consumer_module
from common.messaging import topology
from common.messaging.connection import BLOCKED_CONNECTION_TIMEOUT_SECONDS, HEARTBEAT_SECONDS, parameters
from common.messaging.consumer import Consumer, Result
from common.messaging.envelope import RETRY_COUNT_HEADER, Outgoing
from common.messaging.messages import CodeRequested, CodeSubmitted, CodeVerified, Purpose
from common.settings import SettingsError
from email_service import bootstrap as worker_bootstrap
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.config import Settings as WorkerSettings
from email_service.domain.codes import code_for_request
from tests.fakes import RecordingMailer, as_delivered, topology_consuming
from tests.unit.conftest import BASE_ENV

KEY = "unit-test-code-key-that-is-long-enough-0123456789"


# --- connections and topology


def test_connections_have_heartbeats_and_a_blocked_connection_timeout():
    [params] = parameters("amqp://guest:guest@127.0.0.1:5672/%2F", "test")
    assert params.heartbeat == HEARTBEAT_SECONDS > 0
    assert params.blocked_connection_timeout == BLOCKED_CONNECTION_TIMEOUT_SECONDS > 0
    assert params.socket_timeout > 0


def test_retry_delays_are_a_setting_and_name_their_retry_queues():
    assert WorkerSettings.from_env({"RETRY_DELAYS_SECONDS": "1,3,8"}).retry_delays_seconds == (1, 3, 8)
    assert WorkerSettings.from_env({}).retry_delays_seconds == topology.RETRY_DELAYS_SECONDS
    for bad in ("1,x", "0,5", "-1", "1,,2"):
        with pytest.raises(SettingsError, match="RETRY_DELAYS_SECONDS"):
            WorkerSettings.from_env({"RETRY_DELAYS_SECONDS": bad})
    queue = topology.WorkQueue("Q", (1, 3, 8))
    assert queue.retry_queues == ["Q.retry.1s", "Q.retry.3s", "Q.retry.8s"]
    assert queue.retry_queue(7) == "Q.retry.8s"
    assert queue.max_retries == 3


def test_both_services_read_the_same_retry_ladder():
    from auth_service.config import Settings as AuthSettings

    env = {**BASE_ENV, "RETRY_DELAYS_SECONDS": "1,2"}
    auth, worker = AuthSettings.from_env(env), WorkerSettings.from_env(env)
    assert auth.retry_delays_seconds == worker.retry_delays_seconds == (1, 2)


# --- codes: a redelivered request never voids the code it may already have mailed


def test_the_code_of_a_request_depends_only_on_its_message_id():
    assert code_for_request(KEY, "m1") == code_for_request(KEY, "m1")
    assert len(code_for_request(KEY, "m1")) == 6 and code_for_request(KEY, "m1").isdigit()
    assert len({code_for_request(KEY, f"m{n}") for n in range(200)}) > 190
    assert code_for_request(KEY, "m1") != code_for_request("another-key-that-is-long-enough-0123456789", "m1")


class _DiesAfterSending(RedisPendingCodes):
    """A store whose process 'dies' right after the mail went out, before recording it."""

    die = True

    def finish_issue(self, slot, message_id: str, holder: str, *, sent: bool) -> None:
        if self.die:
            raise SystemExit("killed")
        super().finish_issue(slot, message_id, holder, sent=sent)


def _registration(email: str) -> Outgoing:
    return CodeRequested(Purpose.VERIFY_EMAIL, "u1", email, time.time()).outgoing()


def _submission(email: str, code: str) -> Outgoing:
    return CodeSubmitted(Purpose.VERIFY_EMAIL, email, code=code).outgoing()


class _Publisher:
    def __init__(self):
        self.published: list[tuple[str, Outgoing]] = []

    def publish(self, queue: str, message: Outgoing) -> None:
        self.published.append((queue, message))

    def reply(self, reply_to: str, message: Outgoing) -> None:
        self.published.append((reply_to, message))


def test_a_request_redelivered_after_a_crash_mails_the_same_code_again():
    settings = WorkerSettings.from_env(BASE_ENV)
    store = _DiesAfterSending(fakeredis.FakeRedis(), "t")
    mailer = RecordingMailer()
    handlers = worker_bootstrap.build_handlers(settings, store=store, mailer=mailer)
    request = _registration("a@example.com")

    with pytest.raises(SystemExit):
        handlers.code_requests(as_delivered(request), _Publisher())
    store.die = False
    assert handlers.code_requests(as_delivered(request), _Publisher()) == Result.ack()
    assert handlers.code_requests(as_delivered(request), _Publisher()) == Result.ack()  # now recorded: no mail

    first, second = (sent["code"] for sent in mailer.sent)
    assert first == second
    publisher = _Publisher()
    handlers.code_submissions(as_delivered(_submission("a@example.com", first)), publisher)
    assert [message.type for _, message in publisher.published] == [CodeVerified.TYPE]


def test_a_request_redelivered_after_redis_lost_it_mails_the_same_code():
    settings = WorkerSettings.from_env(BASE_ENV)
    redis_server = fakeredis.FakeRedis()
    mailer = RecordingMailer()
    store = RedisPendingCodes(redis_server, "t")
    handlers = worker_bootstrap.build_handlers(settings, store=store, mailer=mailer)
    request = _registration("b@example.com")
    handlers.code_requests(as_delivered(request), _Publisher())
    redis_server.flushall()
    handlers.code_requests(as_delivered(request), _Publisher())
    assert len({sent["code"] for sent in mailer.sent}) == 1


# --- the consumer holds a message while a store is down instead of spending its retries


class _Channel:
    def __init__(self):
        self.acked: list[int] = []
        self.nacked: list[int] = []
        self.published: list[str] = []

    def basic_ack(self, tag, multiple=False):
        self.acked.append(tag)

    def basic_nack(self, tag, requeue):
        assert requeue
        self.nacked.append(tag)

    def basic_publish(self, exchange, routing_key, body, properties, mandatory=False):
        self.published.append(routing_key)


class _Connection:
    def __init__(self):
        self.slept = 0.0

    def sleep(self, seconds):
        time.sleep(seconds)
        self.slept += seconds


def _consumer(handler) -> tuple[Consumer, _Channel, _Connection]:
    consumer = Consumer(
        url="amqp://unused",
        queue="Q",
        handler=handler,
        topology=topology_consuming("Q"),
        unavailable=(redis.ConnectionError,),
    )
    connection = _Connection()
    consumer._connection = connection
    return consumer, _Channel(), connection


def _deliver(consumer: Consumer, channel: _Channel, headers: dict | None = None) -> None:
    message = _registration("c@example.com")
    properties = message.properties()
    properties.headers = {**(properties.headers or {}), **(headers or {})}
    consumer._on_message(channel, pika.spec.Basic.Deliver(delivery_tag=7), properties, message.encoded_body())
    consumer.on_tick()


def test_a_message_is_held_while_redis_is_down_and_acked_once_it_is_back(monkeypatch):
    monkeypatch.setattr(consumer_module, "HOLD_INITIAL_SECONDS", 0.01)
    failures = iter([redis.ConnectionError(), redis.ConnectionError(), redis.ConnectionError()])

    def handler(message, publisher):
        error = next(failures, None)
        if error is not None:
            raise error
        return Result.ack()

    consumer, channel, connection = _consumer(handler)
    _deliver(consumer, channel)
    assert channel.acked == [7]
    assert channel.published == []  # not parked on the retry ladder, not dead-lettered
    # Growing pauses (0.01, 0.02, 0.04 s here), spent in the connection so heartbeats go on.
    assert 0.06 <= connection.slept < 0.5


def test_a_held_message_is_handed_back_when_the_consumer_stops():
    consumer_box: list[Consumer] = []

    def handler(message, publisher):
        consumer_box[0].stop()
        raise redis.ConnectionError()

    consumer, channel, _ = _consumer(handler)
    consumer_box.append(consumer)
    _deliver(consumer, channel)
    assert channel.nacked == [7] and channel.acked == [] and channel.published == []


def test_other_handler_failures_climb_the_retry_ladder_then_dead_letter():
    def handler(message, publisher):
        raise ValueError("a bug")

    consumer, channel, _ = _consumer(handler)
    for retries in range(topology.WorkQueue("Q").max_retries + 1):
        _deliver(consumer, channel, {RETRY_COUNT_HEADER: retries})
    assert channel.published == [*topology.WorkQueue("Q").retry_queues, "Q.dead"]
    assert channel.acked == [7] * 5


# --- HTTP: a store that does not answer is a 503 with Retry-After, never a 500


def test_mongodb_down_is_a_503_with_retry_after(system, monkeypatch):
    def unreachable(*args, **kwargs):
        raise pymongo.errors.ServerSelectionTimeoutError("no servers")

    monkeypatch.setattr(system.auth.users, "by_email", unreachable)
    response = system.client.post("/auth/login", json={"email": "d@example.com", "password": "whatever-long"})
    assert response.status_code == 503
    assert response.json["error"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def test_resend_while_the_broker_is_down_is_a_503_and_starts_no_cooldown(system):
    system.client.post("/auth/register", json={"email": "e@example.com", "password": "correct horse battery"})
    system.cooldown_clock.advance(3600)  # past the cooldown the registration started
    system.broker.up = False
    refused = system.client.post("/auth/resend-code", json={"email": "e@example.com"})
    assert refused.status_code == 503 and refused.json["error"] == "service_unavailable"
    assert int(refused.headers["Retry-After"]) > 0
    system.broker.up = True
    assert system.client.post("/auth/resend-code", json={"email": "e@example.com"}).status_code == 202
