"""Webhooks end to end: the real auth process (API and dispatcher threads), this machine's RabbitMQ, the
worker and its mail sink, and receivers on loopback that verify every delivery with the Standard
Webhooks reference library, as a customer's service would.

The auth processes and this test share one database through devtools/mongo_wire.py (there is no
MongoDB server on this machine), so the test reads the delivery log as an operator would. Endpoints are
managed through ``WebhookEndpoints``, the operations the admin API serves, on that database and the
stack's broker. Every receiver is on loopback, hence WEBHOOK_ALLOW_PRIVATE_URLS=true, except in the
SSRF tests, which run with the guard on and whose refused addresses are refused before any connection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
import pymongo
import pytest

from auth_service.adapters.mongo_webhooks import MongoWebhooks
from auth_service.adapters.rabbitmq import RabbitMessageBus
from auth_service.adapters.webhook_addresses import AddressChecker
from auth_service.adapters.webhook_feed import BrokerEventFeed
from auth_service.adapters.webhook_http import WebhookClient
from auth_service.adapters.webhook_timers import BrokerWebhookTimers
from auth_service.config import Settings
from auth_service.domain.sealed_keys import WEBHOOK_SECRETS_INFO, KeySealer
from auth_service.domain.webhooks import AttemptOutcome, Delivery, DeliveryStatus, Endpoint, Secret, new_secret
from auth_service.service_layer.flows.webhook_endpoints import WebhookEndpoints
from devtools.mailsink import free_port
from devtools.mongo_wire import MongoWireServer
from devtools.stack import LocalStack, Service
from devtools.webhook_receiver import Receiver, always
from tests.integration.conftest import BASE_OVERRIDES, RABBITMQ_URL
from tests.integration.test_account_events_flow import SHORT_LOCKS, OtherService
from tests.integration.test_admin_api import create_key
from tests.integration.test_lifecycle_flow import NEW_PASSWORD, PASSWORD, bearer, login, mail, new_email, sign_up
from tests.node_programs import NODE_PROGRAMS, node_programs
from tests.waiting import eventually

TIMEOUT_SECONDS = 2
SCHEDULE = "1,2"  # seconds: a delivery gets three attempts, then it is failed
DELIVERY_WAIT = 60.0


@dataclass
class Hooks:
    """A stack, its shared database, and an operator's admin key for its webhooks."""

    stack: LocalStack
    mongo: MongoWireServer
    endpoints: WebhookEndpoints
    store: MongoWebhooks
    bus: RabbitMessageBus
    key: str
    feed: BrokerEventFeed

    def admin(self, method: str, path: str, body: dict | None = None):
        return self.stack.admin_call(method, path, self.key, body)

    def add(self, receiver: Receiver, events: list[str] | None = None) -> Endpoint:
        status, _, created = self.admin(
            "POST", "/admin/webhooks", {"url": receiver.url, "events": events or ["user.*"]}
        )
        assert status == 201, created
        receiver.secrets = [created["secret"]]
        endpoint = self.store.endpoint(created["id"])
        assert endpoint is not None
        return endpoint

    def rotate(self, endpoint: Endpoint) -> str:
        status, _, body = self.admin("POST", f"/admin/webhooks/{endpoint.id}/rotate-secret")
        assert status == 200, body
        return body["secret"]

    def retry(self, endpoint: Endpoint, delivery_id: str) -> None:
        status, _, body = self.admin("POST", f"/admin/webhooks/{endpoint.id}/deliveries/{delivery_id}/retry")
        assert status == 202, body

    def remove(self, endpoint: Endpoint) -> None:
        assert self.admin("DELETE", f"/admin/webhooks/{endpoint.id}")[0] == 204

    def deliveries(self, endpoint: Endpoint, status: str | None = None) -> list[Delivery]:
        """The delivery log as stored (with each body), read from the shared database."""
        return self.endpoints.deliveries(endpoint.id, status)

    def delivery_of(self, endpoint: Endpoint, event_id: str) -> Delivery | None:
        return next((d for d in self.deliveries(endpoint) if d.event_id == event_id), None)

    def wait_until(self, endpoint: Endpoint, event_id: str, status: DeliveryStatus) -> Delivery:
        """The event's delivery to the endpoint once it has reached ``status``."""

        def reached() -> Delivery | None:
            found = self.delivery_of(endpoint, event_id)
            return found if found is not None and found.status is status else None

        delivery = eventually(reached, f"the delivery {status.value}", DELIVERY_WAIT)
        assert delivery is not None
        return delivery


@contextlib.contextmanager
def hooks_on(start_stack, tmp_path: Path, **overrides: str) -> Iterator[Hooks]:
    mongo = MongoWireServer(free_port()).start()
    bus = None
    try:
        settings_of_test = {
            "MONGO_URI": mongo.uri,
            "WEBHOOK_DISPATCHER": "true",
            "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            "WEBHOOK_RETRY_SCHEDULE": SCHEDULE,
            "WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
            "ADMIN_KEYS_FILE": str(tmp_path / "admin-keys"),
        }
        stack = start_stack(**{**settings_of_test, **overrides})
        settings = Settings.from_env({**BASE_OVERRIDES, **stack.env, "MONGO_URI": mongo.uri})
        client: pymongo.MongoClient[dict] = pymongo.MongoClient(mongo.uri, tz_aware=True)
        database = client[settings.mongo_db]
        store = MongoWebhooks(database, KeySealer(settings.jwt_secret.get_secret_value(), WEBHOOK_SECRETS_INFO))
        bus = RabbitMessageBus(settings.rabbitmq_url, settings.topology, max_waiting_replies=1)
        bus.start()
        assert bus.ready.wait(15), "the test's broker link did not come up"
        timers = BrokerWebhookTimers(bus, settings.topology.work_queue(settings.webhooks_queue), 5.0)
        feed = BrokerEventFeed(bus, settings.topology, 5.0)
        endpoints = WebhookEndpoints(store, timers, feed, AddressChecker(settings.webhook_allow_private_urls))
        key = create_key(stack, "webhooks-operator", "webhooks:write")
        yield Hooks(stack, mongo, endpoints, store, bus, key, feed)
    finally:
        if bus is not None:
            bus.stop()
            bus.join(5)
        mongo.stop()


@pytest.fixture(scope="module")
def hooks(start_module_stack, tmp_path_factory) -> Iterator[Hooks]:
    with hooks_on(start_module_stack, tmp_path_factory.mktemp("hooks"), **SHORT_LOCKS) as made:
        yield made


def registered_event_id(hooks: Hooks, endpoint: Endpoint, email: str) -> str:
    """Register ``email`` and return the event id of its user.registered, as delivered to ``endpoint``."""
    assert hooks.stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201

    def delivered() -> str | None:
        for delivery in hooks.deliveries(endpoint):
            if delivery.event_type == "user.registered" and json.loads(delivery.body)["email"] == email:
                return delivery.event_id
        return None

    found = eventually(delivered, timeout=DELIVERY_WAIT, what=f"a delivery of {email}'s registration")
    assert found is not None
    return found


def received(receiver: Receiver, event_id: str) -> None:
    """Wait until ``receiver`` holds the delivery of ``event_id``: a delivery listed is not yet one received."""
    eventually(
        lambda: event_id in {r.webhook_id for r in receiver.snapshot()}, f"the delivery of {event_id}", DELIVERY_WAIT
    )


def test_every_event_of_one_users_life_reaches_the_receiver_signed_and_verified(hooks):
    stack = hooks.stack
    other = OtherService(stack.env["ACCOUNT_EVENTS_EXCHANGE"])
    with Receiver() as receiver:
        endpoint = hooks.add(receiver)
        try:
            email, moved = new_email(), new_email()
            pair = sign_up(stack, email)
            agent = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"}
            assert stack.call("POST", "/auth/login", {"email": email, "password": PASSWORD}, agent)[0] == 200
            for _ in range(3):  # two warn, the third locks; the broker's timer unlocks (LOCKOUT_SECONDS=2)
                stack.call("POST", "/auth/login", {"email": email, "password": "a wrong password"})
            mail(stack, email, "is unlocked")
            pair = login(stack, email)
            change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
            status, _, pair = stack.call("POST", "/auth/password/change", change, headers=bearer(pair))
            assert status == 200
            ask = {"new_email": moved, "password": NEW_PASSWORD}
            assert stack.call("POST", "/auth/email/change", ask, headers=bearer(pair))[0] == 202
            code = mail(stack, moved, "Confirm your new").code
            assert stack.call("POST", "/auth/email/confirm", {"code": code}, headers=bearer(pair))[0] == 200
            assert stack.call("DELETE", "/auth/sessions", headers=bearer(pair))[0] == 204

            published = other.wait_for(12)
            types = {body["type"] for body in published}
            assert {
                "user.registered",
                "user.verified",
                "user.login_new_device",
                "user.login_failures",
                "user.locked",
                "user.unlocked",
                "user.password_changed",
                "user.sessions_revoked",
                "user.email_changed",
            } <= types, types

            def all_delivered() -> list:
                got = {r.webhook_id for r in receiver.snapshot()}
                return [body for body in published if body["event_id"] not in got]

            eventually(lambda: not all_delivered(), timeout=DELIVERY_WAIT, what="events not delivered")
        finally:
            other.close()
        received = receiver.snapshot()
        by_id = {r.webhook_id: r for r in received}
        for body in published:
            delivered = by_id[body["event_id"]]
            # The very bytes published, verified by the reference library with the endpoint's secret.
            assert delivered.verified, delivered
            assert json.loads(delivered.body) == body
            assert delivered.signature.startswith("v1,") and " " not in delivered.signature
        assert all(r.verified for r in received)
        # A kept connection: the deliveries came over fewer connections than there were deliveries.
        assert len({r.connection for r in received}) < len(received)
        recorded = {d.event_id: d for d in hooks.deliveries(endpoint)}
        assert all(recorded[body["event_id"]].status is DeliveryStatus.DELIVERED for body in published)
        hooks.remove(endpoint)


def test_a_receiver_that_knows_only_the_new_secret_verifies_after_a_rotation(hooks):
    with Receiver() as receiver:
        endpoint = hooks.add(receiver)
        old = receiver.secrets[0]
        first = registered_event_id(hooks, endpoint, new_email())
        received(receiver, first)  # signed before the rotation, so by the old secret alone
        new = hooks.rotate(endpoint)
        assert new.startswith("whsec_") and new != old
        receiver.secrets = [new]  # the receiver switched at once; the old secret still signs beside the new
        second = registered_event_id(hooks, endpoint, new_email())
        received(receiver, second)
        by_id = {r.webhook_id: r for r in receiver.snapshot()}
        assert by_id[second].verified
        assert len(by_id[second].signature.split(" ")) == 2  # both secrets sign during the rotation
        receiver.secrets = [old]  # a receiver still on the old secret verifies too
        assert receiver.verifies(by_id[second].body, _headers(by_id[second]))
        assert len(by_id[first].signature.split(" ")) == 1
        hooks.remove(endpoint)


def test_a_node_receiver_verifies_deliveries_as_the_docs_show(hooks):
    """docs/webhooks.md's Node receiver: the standardwebhooks npm package, the secret, the raw body."""
    node_programs("standardwebhooks", "the Node receiver")
    with Receiver() as receiver:
        endpoint = hooks.add(receiver)
        old = receiver.secrets[0]
        email = new_email()
        first = registered_event_id(hooks, endpoint, email)
        received(receiver, first)  # signed before the rotation, so by the old secret alone
        new = hooks.rotate(endpoint)
        second = registered_event_id(hooks, endpoint, new_email())
        received(receiver, second)
        by_id = {r.webhook_id: r for r in receiver.snapshot()}
        hooks.remove(endpoint)
    before, during = by_id[first], by_id[second]
    tampered = during.body.replace(b'"user.registered"', b'"user.verified"')
    assert tampered != during.body
    answers = _node_verdicts(
        [
            (old, before.body, _headers(before)),
            (new, during.body, _headers(during)),  # a receiver that switched to the new secret at once
            (old, during.body, _headers(during)),  # one still on the old secret, during the rotation
            (new, tampered, _headers(during)),
            (new, before.body, _headers(before)),  # signed before the rotation: the new secret never signed it
        ]
    )
    assert [answer["ok"] for answer in answers] == [True, True, True, False, False], answers
    assert answers[0]["event"]["email"] == email and answers[0]["event"]["event_id"] == first
    assert answers[1]["event"]["event_id"] == second


def _node_verdicts(deliveries: list[tuple[str, bytes, dict[str, str]]]) -> list[dict]:
    lines = "".join(
        json.dumps({"secret": secret, "headers": headers, "body": body.decode()}) + "\n"
        for secret, body, headers in deliveries
    )
    verifier = subprocess.run(
        ["node", str(NODE_PROGRAMS / "verify_webhook.mjs")],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in verifier.stdout.splitlines()]


def _headers(received) -> dict[str, str]:
    return {
        "webhook-id": received.webhook_id,
        "webhook-timestamp": received.timestamp,
        "webhook-signature": received.signature,
    }


def test_two_500s_then_a_200_is_delivered_once_after_three_attempts(hooks):
    with Receiver(answer=lambda number: (500 if number <= 2 else 200, 0.0, {})) as receiver:
        endpoint = hooks.add(receiver)
        event_id = registered_event_id(hooks, endpoint, new_email())
        delivery = hooks.wait_until(endpoint, event_id, DeliveryStatus.DELIVERED)
        assert [a.outcome for a in delivery.attempts] == [
            AttemptOutcome.HTTP_ERROR,
            AttemptOutcome.HTTP_ERROR,
            AttemptOutcome.SUCCESS,
        ]
        assert [a.status_code for a in delivery.attempts] == [500, 500, 200]
        received = receiver.snapshot()
        assert [r.webhook_id for r in received] == [event_id] * 3  # one id: the receiver dedupes by it
        assert all(r.verified for r in received)
        hooks.remove(endpoint)


def test_a_receiver_that_never_answers_fails_after_the_schedule_then_a_retry_by_hand_delivers(hooks):
    answering = threading.Event()

    def answer(number: int) -> tuple[int, float, dict[str, str]]:
        return (200, 0.0, {}) if answering.is_set() else (200, TIMEOUT_SECONDS + 2, {})

    with Receiver(answer=answer) as receiver:
        endpoint = hooks.add(receiver)
        event_id = registered_event_id(hooks, endpoint, new_email())
        delivery = hooks.wait_until(endpoint, event_id, DeliveryStatus.FAILED)
        assert [a.outcome for a in delivery.attempts] == [AttemptOutcome.TIMEOUT] * 3
        assert [d.id for d in hooks.deliveries(endpoint, "failed")] == [delivery.id]

        answering.set()
        hooks.retry(endpoint, delivery.id)
        delivery = hooks.wait_until(endpoint, event_id, DeliveryStatus.DELIVERED)
        assert [a.outcome for a in delivery.attempts][-1] is AttemptOutcome.SUCCESS
        assert len(delivery.attempts) == 4
        hooks.remove(endpoint)


def test_a_slow_endpoint_does_not_hold_back_a_fast_ones_deliveries(hooks):
    released = threading.Event()

    def hang(number: int) -> tuple[int, float, dict[str, str]]:
        released.wait(DELIVERY_WAIT)
        return 200, 0.0, {}

    events = 12  # more than the slow endpoint's lane threads (WEBHOOK_ENDPOINT_CONCURRENCY=4)
    with Receiver(answer=hang) as slow, Receiver() as fast:
        slow_endpoint = hooks.add(slow)
        fast_endpoint = hooks.add(fast)
        try:
            emails = [new_email() for _ in range(events)]
            for email in emails:
                assert hooks.stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201

            def fast_has_all() -> bool:
                got = {json.loads(r.body)["email"] for r in fast.snapshot()}
                return set(emails) <= got

            # Every fast delivery arrives while every attempt at the slow endpoint is still hanging.
            eventually(fast_has_all, timeout=DELIVERY_WAIT, what="the fast endpoint waited for the slow one")
            assert not released.is_set()
            assert slow.snapshot(), "the slow endpoint was not even tried"
            assert all(r.verified for r in fast.snapshot())
        finally:
            released.set()
            hooks.remove(slow_endpoint)
            hooks.remove(fast_endpoint)


@pytest.fixture(scope="module")
def guarded(start_module_stack, tmp_path_factory) -> Iterator[Hooks]:
    with hooks_on(start_module_stack, tmp_path_factory.mktemp("guarded"), WEBHOOK_ALLOW_PRIVATE_URLS="false") as made:
        yield made


def test_private_addresses_are_refused_at_creation_with_the_guard_on(guarded):
    with Receiver() as receiver:
        port = receiver.port
        for url in (
            f"http://127.0.0.1:{port}/hooks",
            "http://10.0.0.1/hooks",
            f"http://[::1]:{port}/hooks",
            "http://169.254.169.254/latest/meta-data/",
            f"http://localhost:{port}/hooks",  # a name that resolves to loopback
            "ftp://example.com/hooks",
            "file:///etc/passwd",
        ):
            status, _, body = guarded.admin("POST", "/admin/webhooks", {"url": url, "events": ["user.*"]})
            assert (status, body["error"]) == (422, "validation_error"), (url, body)
            assert "url" in body["fields"], (url, body)
        assert guarded.admin("GET", "/admin/webhooks")[2] == {"webhooks": []}
        assert receiver.snapshot() == []


def test_a_url_that_turns_private_after_creation_is_refused_at_delivery_and_not_retried(guarded):
    """As if DNS answered differently since the endpoint was added: stored as it is, refused at delivery."""
    with Receiver() as receiver:
        port = receiver.port
        urls = [
            f"http://127.0.0.1:{port}/hooks",
            "http://10.0.0.1/hooks",
            f"http://[::1]:{port}/hooks",
            "http://169.254.169.254/latest/meta-data/",
            f"http://localhost:{port}/hooks",
        ]
        stored = []
        for url in urls:
            endpoint = Endpoint(
                id=uuid.uuid4().hex[:24],
                url=url,
                events=("user.registered",),
                secrets=(Secret(new_secret()),),
                created_at=_now(),
            )
            guarded.store.add_endpoint(endpoint)
            stored.append(endpoint)
        # Stored behind the flow's back, so subscribed as its creation would (the sweep does it within a minute).
        guarded.feed.open()
        try:
            email = new_email()
            assert guarded.stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201

            def all_refused() -> list[Delivery] | None:
                found = [guarded.deliveries(endpoint) for endpoint in stored]
                if all(len(d) == 1 and d[0].status is DeliveryStatus.REFUSED for d in found):
                    return [d[0] for d in found]
                return None

            refused = eventually(all_refused, timeout=DELIVERY_WAIT, what="not refused at delivery")
            for delivery in refused:
                assert [a.outcome for a in delivery.attempts] == [AttemptOutcome.REFUSED]
                assert delivery.next_attempt_at is None
            assert receiver.snapshot() == []  # no connection reached loopback
        finally:
            for endpoint in stored:
                guarded.remove(endpoint)


def test_a_redirect_to_loopback_is_not_followed_with_the_guard_on():
    """The receiver stands for a public host: the client's resolver names a public address for it and its
    connector reaches it on loopback. Its 302 to loopback is a failed attempt, never a request."""
    with Receiver() as target:
        redirect = always(302)
        with Receiver(answer=lambda number: (*redirect(number)[:2], {"Location": target.url})) as receiver:
            client = WebhookClient(
                allow_private=False,
                resolve=lambda host, port: ["93.184.215.14"],
                connect=lambda address, timeout: socket.create_connection(("127.0.0.1", receiver.port), timeout),
            )
            result = client.post("http://hooks.example.com/in", b"{}", {"webhook-id": "x"}, TIMEOUT_SECONDS)
            assert result.outcome is AttemptOutcome.REDIRECT and result.status_code == 302
            assert len(receiver.snapshot()) == 1
            assert target.snapshot() == []
            # Without the stand-in resolver, the same client refuses the loopback target outright.
            direct = WebhookClient(allow_private=False).post(target.url, b"{}", {}, TIMEOUT_SECONDS)
            assert direct.outcome is AttemptOutcome.REFUSED
            assert target.snapshot() == []


def routed(exchange: str, routing_key: str) -> bool:
    """Does a mandatory publish to ``exchange`` with ``routing_key`` reach any queue?"""
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        try:
            # Not an event of ours: if it were routed, the dispatcher would dead-letter it (no event_id).
            channel.basic_publish(exchange, routing_key, b"{}", pika.BasicProperties(type="probe"), mandatory=True)
        except pika.exceptions.UnroutableError:
            return False
        return True
    finally:
        if connection.is_open:
            connection.close()


def test_account_events_reach_the_webhooks_queue_only_once_an_endpoint_exists(start_stack, tmp_path):
    """Until an endpoint is added nobody reads account events: RabbitMQ routes none to the webhooks queue
    and the dispatcher handles none. The first endpoint's creation subscribes the queue before its 201, so
    the very next event is delivered."""
    with hooks_on(start_stack, tmp_path) as fresh, Receiver() as receiver:
        events = fresh.stack.env["ACCOUNT_EVENTS_EXCHANGE"]
        assert fresh.stack.call("POST", "/auth/register", {"email": new_email(), "password": PASSWORD})[0] == 201
        assert not routed(events, "user.registered")
        endpoint = fresh.add(receiver)
        assert routed(events, "user.registered")
        received(receiver, registered_event_id(fresh, endpoint, new_email()))
        fresh.remove(endpoint)
        # Never unsubscribed: an endpoint added while the last one is being removed must not miss events.
        assert routed(events, "user.registered")


def queue_exists(name: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.fixture
def split(start_stack, tmp_path) -> Iterator[tuple[Hooks, Service]]:
    """The API without a dispatcher, and ``python -m auth_service webhooks`` as a process of its own."""
    with hooks_on(start_stack, tmp_path, WEBHOOK_DISPATCHER="false") as made:
        dispatcher = Service(
            "auth_service",
            made.stack.env,
            tmp_path / "dispatcher.log",
            {"WEBHOOK_DISPATCHER": "true", "WEBHOOKS_METRICS_PORT": "0"},
            args=("webhooks",),
        )
        yield made, dispatcher
        dispatcher.stop()


def test_a_dispatcher_killed_mid_delivery_loses_no_event(split, note):
    hooks, dispatcher = split
    events = 60
    with Receiver(answer=always(200, delay=0.3)) as receiver:
        endpoint = hooks.add(receiver)
        dispatcher.start()
        # The first start declares the dispatcher's queue: events published before it exists have no route.
        eventually(lambda: queue_exists(hooks.stack.env["WEBHOOKS_QUEUE"]), "the dispatcher's queue", DELIVERY_WAIT)
        emails = [new_email() for _ in range(events)]
        writer = threading.Thread(
            target=lambda: [
                hooks.stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD}) for email in emails
            ],
            daemon=True,
        )
        started = time.monotonic()
        writer.start()
        interrupted = []
        for threshold in (5, 20, 35):
            eventually(lambda t=threshold: len(receiver.snapshot()) >= t, "deliveries before the kill", DELIVERY_WAIT)
            interrupted.append(receiver.in_flight)
            dispatcher.kill()  # SIGKILL: no chance to finish the attempts in hand or ack anything
            dispatcher.start()
        writer.join(DELIVERY_WAIT)
        assert any(interrupted), "no kill came while a POST was in flight"

        def missing() -> set[str]:
            got = {json.loads(r.body)["email"] for r in receiver.snapshot()}
            return set(emails) - got

        eventually(lambda: not missing(), timeout=DELIVERY_WAIT * 2, what="events lost to the kills")
        elapsed = time.monotonic() - started

        def all_recorded_delivered() -> bool:
            deliveries = hooks.deliveries(endpoint)
            return len(deliveries) == events and all(d.status is DeliveryStatus.DELIVERED for d in deliveries)

        # The attempts the kills interrupted are taken over once their lease is out, and recorded.
        eventually(all_recorded_delivered, "every delivery recorded delivered", DELIVERY_WAIT)
        received = receiver.snapshot()
        ids = [r.webhook_id for r in received]
        assert all(r.verified for r in received)
        note(
            f"{events} events, dispatcher SIGKILLed {len(interrupted)} times with {interrupted} POSTs in flight: "
            f"all {events} delivered "
            f"({len(ids)} POSTs, {len(ids) - len(set(ids))} repeats deduped by webhook-id) in {elapsed:.1f} s"
        )
        hooks.remove(endpoint)
    assert dispatcher.exit_code() is None, dispatcher.log_text()[-3000:]


def test_the_admin_api_manages_endpoints_and_shows_their_deliveries(hooks):
    stack = hooks.stack
    reader = create_key(stack, "webhooks-auditor", "audit:read")
    with Receiver(answer=lambda number: (500 if number == 1 else 200, 0.0, {})) as receiver:
        assert (
            stack.admin_call("POST", "/admin/webhooks", reader, {"url": receiver.url, "events": ["user.*"]})[0] == 403
        )
        status, _, created = hooks.admin(
            "POST", "/admin/webhooks", {"url": receiver.url, "events": ["user.registered"], "description": "CRM"}
        )
        assert status == 201, created
        assert created["secret"].startswith("whsec_") and created["events"] == ["user.registered"]
        receiver.secrets = [created["secret"]]
        path = f"/admin/webhooks/{created['id']}"
        listed = hooks.admin("GET", "/admin/webhooks")[2]["webhooks"]
        mine = next(item for item in listed if item["id"] == created["id"])
        assert mine["url"] == receiver.url and mine["enabled"] and "secret" not in mine
        assert created["secret"] not in json.dumps(listed)

        email = new_email()
        assert stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201

        def delivered() -> list:
            return hooks.admin("GET", f"{path}/deliveries?status=delivered")[2]["deliveries"]

        [delivery] = eventually(delivered, "the delivery, listed as delivered", DELIVERY_WAIT)
        assert delivery["event_type"] == "user.registered"
        assert [a["outcome"] for a in delivery["attempts"]] == ["http_error", "success"]
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
        assert hooks.admin("GET", f"{path}/deliveries?status=failed")[2] == {"deliveries": []}
        assert hooks.admin("GET", f"{path}/deliveries?status=lost")[0] == 422
        # Only user.registered was asked for: the verification that follows is not sent.
        assert {r.webhook_id for r in receiver.snapshot()} == {delivery["event_id"]}

        assert hooks.admin("POST", f"{path}/deliveries/{delivery['id']}/retry")[0] == 202
        eventually(lambda: len(receiver.snapshot()) == 3, "the delivery sent again by hand", DELIVERY_WAIT)
        assert receiver.snapshot()[-1].webhook_id == delivery["event_id"] and receiver.snapshot()[-1].verified

        assert hooks.admin("POST", f"{path}/deliveries/{'0' * 32}/retry")[0] == 404
        assert hooks.admin("DELETE", path)[0] == 204
        assert hooks.admin("DELETE", path)[0] == 404
        assert hooks.admin("POST", f"{path}/rotate-secret")[0] == 404
        assert hooks.admin("GET", f"{path}/deliveries")[0] == 404
        status, _, body = hooks.admin("POST", "/admin/webhooks", {"url": receiver.url, "events": ["not a pattern"]})
        assert status == 422 and "events" in body["fields"]
