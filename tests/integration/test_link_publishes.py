"""Publishes that a request does not wait for (``publish_soon``) on the real broker: the link thread
sends them at its next tick, and before any later publish, so one process's publishes leave in the
order they were made, those waited for or not."""

from __future__ import annotations

import threading
import time
import uuid

import pika
import pytest

from auth_service.adapters.rabbitmq import RabbitMessageBus
from auth_service.ports import BrokerUnavailable
from bench.workload import run_topology
from common.messaging.envelope import Outgoing
from devtools.stack import delete_run, unique_names
from tests.integration.conftest import RABBITMQ_URL


def event(name: str) -> Outgoing:
    return Outgoing(type=name, body={}, message_id=uuid.uuid4().hex)


@pytest.fixture
def bus_and_listener():
    names = unique_names("it")
    routes = run_topology(names)
    bus = RabbitMessageBus(RABBITMQ_URL, routes, max_waiting_replies=2)
    bus.start()
    assert bus.ready.wait(15), "the broker link did not come up"
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    listener = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(listener, routes.events_exchange, routing_key="user.#")
    yield bus, channel, listener
    connection.close()
    bus.stop()
    bus.join(10)
    delete_run(RABBITMQ_URL, names)


def received(channel, listener: str, count: int, timeout: float = 10.0) -> list[str]:
    types: list[str] = []
    deadline = time.monotonic() + timeout
    while len(types) < count and time.monotonic() < deadline:
        method, properties, _ = channel.basic_get(listener, auto_ack=True)
        if method is None:
            time.sleep(0.02)
        else:
            types.append(properties.type)
    return types


def test_a_publish_left_for_later_goes_out_at_the_next_tick_and_is_confirmed(bus_and_listener):
    bus, channel, listener = bus_and_listener
    confirmed = bus.publish_soon("user.verified", event("user.verified"))
    assert confirmed.result(timeout=5) is None  # the broker confirmed it, with no later publish to push it
    assert received(channel, listener, 1) == ["user.verified"]


def test_publishes_leave_in_the_order_they_were_made_waited_for_or_not(bus_and_listener):
    bus, channel, listener = bus_and_listener
    first = bus.publish_soon("user.verified", event("user.verified"))
    second = bus.publish_soon("user.login_new_device", event("user.login_new_device"))
    bus.publish("user.password_changed", event("user.password_changed"), timeout=5)  # waited for
    assert first.done() and second.done()  # sent before the one waited for
    assert received(channel, listener, 3) == ["user.verified", "user.login_new_device", "user.password_changed"]


def test_publishes_of_concurrent_requests_are_in_flight_together_and_each_is_confirmed(bus_and_listener, monkeypatch):
    """The link thread sends the next publish without waiting for the last one's confirm (LinkConfirms)."""
    from auth_service.adapters.rabbitmq import LinkConfirms

    bus, channel, listener = bus_and_listener
    in_flight: list[int] = []
    record = LinkConfirms.expect

    def counted(self, message_id, done):
        tag = record(self, message_id, done)
        in_flight.append(len(self._waiting))
        return tag

    monkeypatch.setattr(LinkConfirms, "expect", counted)
    start = threading.Barrier(8)

    def requests() -> None:
        start.wait()
        for _ in range(25):
            bus.publish("user.verified", event("user.verified"), timeout=10)  # returns once confirmed

    threads = [threading.Thread(target=requests) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(in_flight) == 200
    assert max(in_flight) > 1, "every publish waited for the one before it to be confirmed"
    assert received(channel, listener, 200) == ["user.verified"] * 200


def test_a_channel_the_broker_closes_stops_the_link_visibly_instead_of_failing_every_publish(bus_and_listener):
    """An exchange deleted under a running auth: the publish to it is refused, and the link thread ends with
    the channel error (the server's watchdog then exits, and a new process declares the topology again)
    rather than staying up on a channel that can publish nothing."""
    bus, channel, _ = bus_and_listener
    exchange = bus._routes.events_exchange
    channel.exchange_delete(exchange)
    with pytest.raises(BrokerUnavailable):
        bus.publish("user.verified", event("user.verified"), timeout=5)
    bus.join(5)
    assert not bus.is_alive()
    assert isinstance(bus.failure, pika.exceptions.ChannelClosedByBroker)
    assert bus.failure.reply_code == 404
    assert not bus.connected
