"""Webhooks on fakes: the signature as the Standard Webhooks library checks it, patterns, rotation, the SSRF
guard's rules and its connection to the checked address, and the dispatch flow (retries, refusals, giving
up on an endpoint, stale timers, the sweep) on mongomock with a fake receiver and a fake clock."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from auth_service.adapters.mongo_webhooks import MongoWebhooks
from auth_service.adapters.webhook_http import WebhookClient
from auth_service.domain import webhooks as rules
from auth_service.domain.errors import ServiceUnavailable
from auth_service.domain.sealed_keys import WEBHOOK_SECRETS_INFO, KeySealer, UnsealError
from auth_service.domain.webhook_urls import RefusedAddress, check_addresses, parse_url, refusal
from auth_service.domain.webhooks import (
    AttemptOutcome,
    AttemptResult,
    DeliveryStatus,
    Endpoint,
    InvalidEndpoint,
    Secret,
)
from auth_service.entrypoints.webhooks import Lanes, Sweep
from auth_service.ports import BrokerUnavailable
from auth_service.service_layer.flows.webhook_dispatch import DispatchPolicy, WebhookDispatch
from auth_service.service_layer.flows.webhook_endpoints import WebhookEndpoints
from tests.waiting import eventually

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
BODY = '{"type":"user.verified","event_id":"e1","user_id":"u1"}'


def test_a_signature_verifies_with_the_reference_library_and_each_secret_of_a_rotation_signs():
    first, second = rules.new_secret(), rules.new_secret()
    assert first.startswith("whsec_") and len(base64.b64decode(first[6:])) == 24 and first != second
    timestamp = int(datetime.now(UTC).timestamp())
    headers = rules.delivery_headers([second, first], "msg_1", timestamp, BODY.encode())
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(timestamp)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (first, second):
        assert Webhook(secret).verify(BODY, headers) == {"type": "user.verified", "event_id": "e1", "user_id": "u1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(rules.new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(first).verify(BODY.replace("u1", "u2"), headers)


def test_patterns_are_amqp_topics_over_event_names():
    assert rules.topic_matches("user.*", "user.verified")
    assert rules.topic_matches("user.#", "user.verified") and rules.topic_matches("#", "user.deleted")
    assert rules.topic_matches("user.verified", "user.verified")
    assert not rules.topic_matches("user.verified", "user.registered")
    assert not rules.topic_matches("user.*", "user.a.b") and not rules.topic_matches("user.*", "user")
    assert rules.valid_patterns(["user.*", "user.*", "user.deleted"]) == ("user.*", "user.deleted")
    for refused in ([], ["User.*"], ["user verified"], [3], "user.*", ["user.*"] * 40):
        with pytest.raises(InvalidEndpoint):
            rules.valid_patterns(refused)


def test_a_rotated_out_secret_signs_for_a_day_then_stops():
    old, new, newer = rules.new_secret(), rules.new_secret(), rules.new_secret()
    endpoint = Endpoint("e", "https://h.example/", ("user.*",), (Secret(old),), T0)
    rotated = endpoint.rotated(new, T0)
    assert rotated.signing_secrets(T0 + timedelta(hours=23)) == [new, old]
    assert rotated.signing_secrets(T0 + timedelta(hours=24)) == [new]
    # A second rotation within the day keeps the first's end; an expired secret is dropped.
    again = rotated.rotated(newer, T0 + timedelta(hours=1))
    assert again.signing_secrets(T0 + timedelta(hours=2)) == [newer, new, old]
    fresh = rules.new_secret()
    assert again.rotated(fresh, T0 + timedelta(days=3)).signing_secrets(T0 + timedelta(days=3)) == [fresh, newer]


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "::1", "169.254.169.254", "169.254.1.1", "fe80::1",
     "224.0.0.1", "ff02::1", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1", "fd00::1", "192.0.2.1"],
)  # fmt: skip
def test_the_guard_refuses_every_non_public_address(address):
    assert refusal(address, allow_private=False) is not None


def test_the_guard_lets_public_addresses_through_and_allow_private_never_opens_metadata_or_multicast():
    assert refusal("93.184.215.14", allow_private=False) is None
    assert refusal("2606:4700::6810:85e5", allow_private=False) is None
    for private in ("127.0.0.1", "10.0.0.1", "::1", "169.254.1.1"):
        assert refusal(private, allow_private=True) is None
    for never in ("169.254.169.254", "224.0.0.1", "0.0.0.0"):
        assert refusal(never, allow_private=True) is not None
    with pytest.raises(RefusedAddress):
        check_addresses(["93.184.215.14", "10.0.0.1"], allow_private=False)  # one private answer is enough
    with pytest.raises(RefusedAddress):
        check_addresses([], allow_private=False)


def test_only_absolute_http_urls_without_credentials_are_taken():
    assert parse_url("https://hooks.example.com/in?x=1").port == 443
    assert parse_url("http://[::1]:8080/").host == "::1"
    for url in ("ftp://example.com/", "file:///etc/passwd", "https:///nohost", "http://u:p@example.com/", "", 3,
                "http://example.com:99999/", "javascript:alert(1)", "http://exa mple.com/"):  # fmt: skip
        with pytest.raises(InvalidEndpoint):
            parse_url(url)


class Resolver:
    def __init__(self, *answers: list[str]):
        self.answers = list(answers)
        self.asked = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked += 1
        return self.answers[min(self.asked, len(self.answers)) - 1]


def answering_connect(status: int, connected: list):
    """A connector that records the address it is asked for and answers over a socket pair."""

    def connect(address, timeout):
        connected.append(address)
        ours, theirs = socket.socketpair()

        def serve():
            with theirs:
                buffer = b""
                while b"\r\n\r\n" not in buffer:
                    buffer += theirs.recv(65536)
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(rest) < length:
                    rest += theirs.recv(65536)
                theirs.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
                theirs.recv(1)  # until the client closes

        threading.Thread(target=serve, daemon=True).start()
        return ours

    return connect


def test_the_client_connects_to_the_address_it_checked_without_a_second_lookup():
    # A rebinding DNS: public on the first question, loopback on any later one.
    resolver = Resolver(["93.184.215.14"], ["127.0.0.1"])
    connected: list = []
    client = WebhookClient(False, resolve=resolver, connect=answering_connect(204, connected))
    result = client.post("http://hooks.example.com/in", b"{}", {}, 2.0)
    assert result.outcome is AttemptOutcome.SUCCESS and result.status_code == 204
    assert resolver.asked == 1 and connected == [("93.184.215.14", 80)]
    client.close()


def test_a_name_resolving_to_a_private_address_is_refused_before_any_connection():
    connected: list = []
    client = WebhookClient(
        False, resolve=Resolver(["93.184.215.14", "127.0.0.1"]), connect=answering_connect(200, connected)
    )
    result = client.post("http://rebind.example.com/in", b"{}", {}, 2.0)
    assert result.outcome is AttemptOutcome.REFUSED and connected == []


def test_a_redirect_is_a_failed_attempt_not_followed():
    connected: list = []
    client = WebhookClient(False, resolve=Resolver(["93.184.215.14"]), connect=answering_connect(307, connected))
    result = client.post("http://hooks.example.com/in", b"{}", {}, 2.0)
    assert result.outcome is AttemptOutcome.REDIRECT and len(connected) == 1
    assert rules.retried(AttemptOutcome.REDIRECT) and not rules.retried(AttemptOutcome.REFUSED)


class Poster:
    def __init__(self):
        self.outcomes: list[AttemptOutcome] = []
        self.sent: list[tuple[str, bytes, dict]] = []

    def post(self, url, body, headers, timeout_seconds):
        self.sent.append((url, body, headers))
        outcome = self.outcomes.pop(0) if self.outcomes else AttemptOutcome.SUCCESS
        status = {AttemptOutcome.SUCCESS: 200, AttemptOutcome.HTTP_ERROR: 500}.get(outcome)
        return AttemptResult(outcome, 0.01, status)


class Timers:
    def __init__(self):
        self.scheduled: list[tuple[str, str, int | None, int]] = []

    def due(self, delivery_id, endpoint_id, failed_attempts, delay_seconds):
        self.scheduled.append((delivery_id, endpoint_id, failed_attempts, delay_seconds))


class Observer:
    def __init__(self):
        self.attempts: list[tuple[AttemptOutcome, DeliveryStatus]] = []
        self.disabled = 0

    def attempted(self, outcome, delivery_status, seconds):
        self.attempts.append((outcome, delivery_status))

    def endpoint_disabled(self):
        self.disabled += 1


class Clock:
    def __init__(self):
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    database: Any
    store: MongoWebhooks
    dispatch: WebhookDispatch
    poster: Poster
    timers: Timers
    observer: Observer
    clock: Clock
    endpoint: Callable[..., Endpoint]


@pytest.fixture
def world() -> World:
    database: Any = mongomock.MongoClient()["auth"]
    store = MongoWebhooks(database, KeySealer(SECRET, WEBHOOK_SECRETS_INFO), serialize_writes=True)
    poster, timers, observer, clock = Poster(), Timers(), Observer(), Clock()
    dispatch = WebhookDispatch(
        store, poster, timers, DispatchPolicy(10.0, (5, 300), timedelta(days=1)), observer, clock
    )

    def endpoint(events=("user.*",), enabled=True) -> Endpoint:
        made = Endpoint(
            id=f"ep{len(store.endpoints())}",
            url="https://hooks.example.com/in",
            events=tuple(events),
            secrets=(Secret(rules.new_secret()),),
            created_at=T0,
            enabled=enabled,
        )
        store.add_endpoint(made)
        return made

    return World(database, store, dispatch, poster, timers, observer, clock, endpoint)


def test_an_event_fans_out_to_the_endpoints_that_want_it_once_and_is_sent_signed(world):
    everything, verified_only = world.endpoint(), world.endpoint(["user.verified"])
    world.endpoint(["user.registered"])
    world.endpoint(enabled=False)
    due = world.dispatch.fan_out("user.verified", "e1", BODY)
    assert sorted(endpoint_id for _, endpoint_id in due) == sorted([everything.id, verified_only.id])
    assert world.dispatch.fan_out("user.verified", "e1", BODY) == due  # the same event again: the same deliveries
    assert world.database["webhook_deliveries"].count_documents({}) == 2
    delivery_id = due[0][0]
    assert world.dispatch.attempt(delivery_id) is DeliveryStatus.DELIVERED
    assert world.dispatch.attempt(delivery_id) is None  # delivered: nothing more to do
    url, body, headers = world.poster.sent[0]
    assert url == "https://hooks.example.com/in"
    stored = world.store.endpoint(due[0][1])
    assert stored is not None and body == BODY.encode() and headers["webhook-id"] == "e1"
    assert headers["webhook-signature"] == rules.signature_header(
        [stored.secrets[0].value], "e1", int(world.clock()), BODY.encode()
    )


def test_a_failing_delivery_is_scheduled_on_the_schedule_then_failed(world):
    target = world.endpoint()
    [(delivery_id, _)] = world.dispatch.fan_out("user.verified", "e1", BODY)
    world.poster.outcomes = [AttemptOutcome.HTTP_ERROR, AttemptOutcome.TIMEOUT, AttemptOutcome.CONNECTION_ERROR]
    assert world.dispatch.attempt(delivery_id) is DeliveryStatus.RETRYING
    assert world.timers.scheduled == [(delivery_id, target.id, 1, 5)]
    assert world.dispatch.attempt(delivery_id) is None  # not due until its timer comes back
    assert not world.dispatch.timer_due(delivery_id, 0)  # a stale timer changes nothing
    assert world.dispatch.timer_due(delivery_id, 1)
    assert not world.dispatch.timer_due(delivery_id, 1)  # nor does the same timer twice
    assert world.dispatch.attempt(delivery_id) is DeliveryStatus.RETRYING
    assert world.timers.scheduled[-1] == (delivery_id, target.id, 2, 300)
    assert world.dispatch.timer_due(delivery_id, 2)
    assert world.dispatch.attempt(delivery_id) is DeliveryStatus.FAILED
    assert len(world.timers.scheduled) == 2
    delivery = world.store.delivery(delivery_id)
    assert delivery is not None and [a.outcome for a in delivery.attempts] == [
        AttemptOutcome.HTTP_ERROR,
        AttemptOutcome.TIMEOUT,
        AttemptOutcome.CONNECTION_ERROR,
    ]
    assert [status for _, status in world.observer.attempts] == [DeliveryStatus.RETRYING] * 2 + [DeliveryStatus.FAILED]


def test_a_refused_address_is_recorded_refused_and_never_retried(world):
    world.endpoint()
    [(delivery_id, _)] = world.dispatch.fan_out("user.verified", "e1", BODY)
    world.poster.outcomes = [AttemptOutcome.REFUSED]
    assert world.dispatch.attempt(delivery_id) is DeliveryStatus.REFUSED
    assert world.timers.scheduled == []


def test_an_endpoint_without_a_success_for_the_limit_is_disabled_and_a_success_resets_the_count(world):
    target = world.endpoint()
    world.poster.outcomes = [AttemptOutcome.HTTP_ERROR, AttemptOutcome.SUCCESS, AttemptOutcome.HTTP_ERROR]
    for event in ("e1", "e2", "e3"):
        [(delivery_id, _)] = world.dispatch.fan_out("user.verified", event, BODY)
        world.dispatch.attempt(delivery_id)
        world.clock.advance(20 * 3600)
    assert world.store.endpoint(target.id).enabled
    world.poster.outcomes = [AttemptOutcome.TIMEOUT]
    world.clock.advance(5 * 3600)
    [(late, _)] = world.dispatch.fan_out("user.verified", "e4", BODY)
    world.dispatch.attempt(late)  # no success since e3 failed, 25 hours ago
    disabled = world.store.endpoint(target.id)
    assert disabled is not None and not disabled.enabled and world.observer.disabled == 1
    assert world.dispatch.fan_out("user.verified", "e5", BODY) == []
    # What was scheduled for it is dropped when its timer comes back.
    assert world.dispatch.timer_due(late, 1) and world.dispatch.attempt(late) is DeliveryStatus.FAILED
    assert world.store.enable(target.id) and world.store.endpoint(target.id).failing_since is None


def test_a_claim_is_one_dispatchers_and_the_sweep_finds_what_a_dead_one_left(world):
    world.endpoint()
    [(delivery_id, endpoint_id)] = world.dispatch.fan_out("user.verified", "e1", BODY)
    now = datetime.fromtimestamp(world.clock(), UTC)
    assert world.store.claim(delivery_id, now, timedelta(seconds=15)) is not None  # a dispatcher that then dies
    assert world.store.claim(delivery_id, now, timedelta(seconds=15)) is None
    assert world.dispatch.stranded() == []
    world.clock.advance(16)
    assert world.dispatch.stranded() == [(delivery_id, endpoint_id)]
    assert world.dispatch.attempt(delivery_id) is DeliveryStatus.DELIVERED
    # A retry whose timer message was lost is found once it is long overdue.
    [(second, _)] = world.dispatch.fan_out("user.verified", "e2", BODY)
    world.poster.outcomes = [AttemptOutcome.HTTP_ERROR]
    world.dispatch.attempt(second)
    assert world.dispatch.stranded() == []
    world.clock.advance(5 + 61)
    assert world.dispatch.stranded() == [(second, endpoint_id)]
    assert world.dispatch.attempt(second) is DeliveryStatus.DELIVERED


def test_secrets_are_stored_sealed_and_open_with_the_same_jwt_secret_only(world):
    made = world.endpoint()
    document = world.database["webhook_endpoints"].find_one({"_id": made.id})
    assert made.secrets[0].value not in str(document)
    assert made.secrets[0].value[6:] not in str(document)
    assert world.store.endpoint(made.id) == made
    stranger = MongoWebhooks(
        world.database, KeySealer("another-secret-that-is-long-enough-0123456", WEBHOOK_SECRETS_INFO)
    )
    with pytest.raises(UnsealError):
        stranger.endpoint(made.id)


def test_a_slow_endpoints_lane_does_not_hold_back_another_endpoints_deliveries():
    released = threading.Event()
    done: list[str] = []

    def attempt(delivery_id: str) -> None:
        if delivery_id.startswith("slow"):
            released.wait(30)
        done.append(delivery_id)

    lanes = Lanes(attempt, per_endpoint=2, idle_seconds=1)
    for number in range(6):
        lanes.submit("slow-endpoint", f"slow-{number}")
        lanes.submit("fast-endpoint", f"fast-{number}")
    eventually(lambda: len([d for d in done if d.startswith("fast")]) == 6, "the fast endpoint's deliveries")
    assert not any(d.startswith("slow") for d in done)
    released.set()
    eventually(lambda: len(done) == 12, "the slow endpoint's deliveries, once it answers")
    lanes.stop()
    lanes.join(5)


def test_the_attempt_joins_the_events_trace(world, spans):
    from opentelemetry import trace

    world.endpoint()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("process webhooks") as processing:
        [(delivery_id, _)] = world.dispatch.fan_out("user.verified", "e1", BODY)
    world.dispatch.attempt(delivery_id)
    [attempt] = [span for span in spans.get_finished_spans() if span.name == "webhook user.verified"]
    assert attempt.context.trace_id == processing.get_span_context().trace_id
    assert attempt.parent is not None and attempt.parent.span_id == processing.get_span_context().span_id
    assert attempt.attributes["webhook.outcome"] == "success"


class Feed:
    """The event feed as the broker would answer: each ``open`` recorded, or refused while ``down``."""

    def __init__(self, store: MongoWebhooks | None = None):
        self.opened = 0
        self.down = False
        self.endpoints_when_opened: list[int] = []
        self._store = store

    def open(self) -> None:
        if self.down:
            raise BrokerUnavailable("down")
        self.opened += 1
        if self._store is not None:
            self.endpoints_when_opened.append(len(self._store.endpoints()))


def test_an_endpoints_creation_subscribes_the_queue_before_it_is_stored_and_not_at_all_without_the_broker(world):
    feed = Feed(world.store)
    endpoints = WebhookEndpoints(world.store, world.timers, feed, lambda host, port: None, world.clock)
    endpoints.create("https://hooks.example.com/in", ["user.*"])
    assert (feed.opened, feed.endpoints_when_opened) == (1, [0])  # subscribed while not yet stored
    feed.down = True
    with pytest.raises(ServiceUnavailable):
        endpoints.create("https://hooks.example.com/other", ["user.*"])
    assert [endpoint.url for endpoint in world.store.endpoints()] == ["https://hooks.example.com/in"]


def test_the_sweep_keeps_the_queue_subscribed_while_an_endpoint_is_enabled_and_hands_on_deliveries_regardless(world):
    feed, handed = Feed(), []
    lanes = type("Lanes", (), {"submit": lambda self, endpoint_id, delivery_id: handed.append(delivery_id)})()
    ticks = Clock()
    sweep = Sweep(world.dispatch, lanes, feed, interval=5.0, feed_interval=60.0, clock=ticks)
    sweep.run_once()
    assert feed.opened == 0  # no endpoint: nothing reads the events, nothing is subscribed
    disabled = world.endpoint(enabled=False)
    sweep.run_once()
    assert feed.opened == 0
    world.store.enable(disabled.id)
    sweep.run_once()
    sweep.run_once()
    assert feed.opened == 1  # at most once a feed interval
    ticks.advance(60.0)
    feed.down = True
    world.dispatch.fan_out("user.registered", "evt-1", "{}")
    sweep.run_once()
    assert handed == [rules.delivery_id("evt-1", disabled.id)]  # the broker's refusal held back no delivery
    feed.down = False
    sweep.run_once()
    assert feed.opened == 2
