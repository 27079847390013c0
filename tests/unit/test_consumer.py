"""What the consumer does with each handler outcome, on a recording channel."""

from __future__ import annotations

from types import SimpleNamespace

import pika
import pytest

from common.messaging import topology
from common.messaging.consumer import Consumer, Result
from common.messaging.envelope import DEAD_REASON_HEADER, RETRY_COUNT_HEADER, Outgoing
from tests.fakes import topology_consuming

QUEUE = "work"


class RecordingChannel:
    def __init__(self):
        self.events: list[tuple] = []

    def basic_publish(self, exchange, routing_key, body, properties, mandatory=False):
        assert exchange == topology.WORKER_RETRIES_EXCHANGE, "a consumer parks and dead-letters through its own route"
        self.events.append(("publish", routing_key, body, properties))

    def basic_ack(self, delivery_tag, multiple=False):
        self.events.append(("ack", delivery_tag) if not multiple else ("ack up to", delivery_tag))

    def basic_nack(self, delivery_tag, requeue):
        self.events.append(("nack", delivery_tag, requeue))


def deliver(handler, message: Outgoing | None = None, raw: bytes | None = None, headers=None):
    consumer = Consumer(url="amqp://unused", queue=QUEUE, handler=handler, topology=topology_consuming(QUEUE))
    channel = RecordingChannel()
    message = message or Outgoing(type="t", body={"x": 1})
    properties = message.properties()
    if headers:
        properties.headers = {**(properties.headers or {}), **headers}
    consumer._on_message(channel, SimpleNamespace(delivery_tag=7), properties, raw or message.encoded_body())
    consumer.on_tick()  # the connection's pass over its events ends: the batch is acked
    return channel.events


def test_ack_comes_after_the_handler_returned():
    order = []

    def handler(message, publisher):
        order.append("work")
        return Result.ack()

    events = deliver(handler)
    assert order == ["work"]
    assert events == [("ack up to", 7)]


def test_retry_parks_a_copy_in_the_first_retry_queue_then_acks():
    events = deliver(lambda message, publisher: Result.retry("smtp timeout"))
    (kind, queue, _, properties), ack = events
    assert (kind, queue) == ("publish", topology.WorkQueue(QUEUE).retry_queue(0))
    assert properties.headers[RETRY_COUNT_HEADER] == 1
    assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
    assert ack == ("ack up to", 7)


def test_retries_climb_the_ladder_then_go_to_the_dead_letter_queue():
    queue = topology.WorkQueue(QUEUE)
    for retries in range(queue.max_retries):
        [(_, routed, _, _), _] = deliver(lambda m, p: Result.retry("again"), headers={RETRY_COUNT_HEADER: retries})
        assert routed == queue.retry_queue(retries)
    [(_, routed, _, properties), _] = deliver(
        lambda m, p: Result.retry("again"), headers={RETRY_COUNT_HEADER: queue.max_retries}
    )
    assert routed == queue.dead_letter_queue
    assert "retries exhausted" in properties.headers[DEAD_REASON_HEADER]


def test_a_handler_that_raises_is_retried_not_lost():
    def handler(message, publisher):
        raise RuntimeError("bug")

    [(_, queue, _, _), ack] = deliver(handler)
    assert queue == topology.WorkQueue(QUEUE).retry_queue(0)
    assert ack == ("ack up to", 7)


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"no_type": 1}', b"\xff\xfe"])
def test_a_malformed_message_is_dead_lettered_with_the_reason(raw):
    called = []
    events = deliver(lambda m, p: called.append(m) or Result.ack(), raw=raw)
    [(_, queue, body, properties), ack] = events
    assert called == []
    assert queue == topology.WorkQueue(QUEUE).dead_letter_queue
    assert body == raw
    assert properties.headers[DEAD_REASON_HEADER].startswith("malformed")
    assert ack == ("ack up to", 7)


def test_once_asked_to_stop_prefetched_deliveries_are_handed_back_unprocessed():
    handled = []
    consumer = Consumer(
        url="amqp://unused",
        queue=QUEUE,
        handler=lambda m, p: handled.append(m) or Result.ack(),
        topology=topology_consuming(QUEUE),
    )
    channel = RecordingChannel()
    message = Outgoing(type="t", body={"x": 1})
    consumer._on_message(channel, SimpleNamespace(delivery_tag=1), message.properties(), message.encoded_body())
    consumer.stop()
    consumer._on_message(channel, SimpleNamespace(delivery_tag=2), message.properties(), message.encoded_body())
    assert len(handled) == 1
    # The message handled is acked before the rest of its batch is handed back.
    assert channel.events == [("ack up to", 1), ("nack", 2, True)]


def test_a_router_checks_the_type_and_parses_once_before_its_handler():
    from common.messaging.consumer import Router
    from common.messaging.messages import CodeVerified

    handled = []
    router = Router({CodeVerified: lambda delivery, publisher: handled.append(delivery) or Result.ack()})

    good = CodeVerified(user_id="u1", email="a@example.com").outgoing(message_id="m1", request_id="r1")
    assert deliver(router, good) == [("ack up to", 7)]
    [delivery] = handled
    assert delivery.message == CodeVerified(user_id="u1", email="a@example.com")
    assert (delivery.message_id, delivery.request_id) == ("m1", "r1")

    for message in (
        Outgoing(type="code.requested", body={"user_id": "u1"}),  # a type this queue does not take
        Outgoing(type=CodeVerified.TYPE, body={"user_id": 5}),  # its type, a body it refuses
    ):
        [(_, queue, _, properties), _] = deliver(router, message)
        assert queue == topology.WorkQueue(QUEUE).dead_letter_queue
        assert properties.headers[DEAD_REASON_HEADER].startswith(("unexpected message type", "malformed"))
    assert len(handled) == 1


def test_a_batch_of_deliveries_is_acked_once_after_the_last_of_them_is_settled_and_a_parked_one_at_once():
    handled = []
    consumer = Consumer(
        url="amqp://unused",
        queue=QUEUE,
        handler=lambda m, p: handled.append(m) or (Result.retry("smtp") if len(handled) == 2 else Result.ack()),
        topology=topology_consuming(QUEUE),
    )
    channel = RecordingChannel()
    message = Outgoing(type="t", body={"x": 1})
    consumer._on_message(channel, SimpleNamespace(delivery_tag=1), message.properties(), message.encoded_body())
    assert channel.events == [], "acked before the batch ended"
    for tag in (2, 3):
        consumer._on_message(channel, SimpleNamespace(delivery_tag=tag), message.properties(), message.encoded_body())
    consumer.on_tick()
    consumer.on_tick()  # a pass with nothing new settled sends nothing
    kinds = [event[0] for event in channel.events]
    # The second message's retry copy is published, then the batch so far acked at once, so that the original
    # and its copy are never both live; the third waits for the end of the batch.
    assert kinds == ["publish", "ack up to", "ack up to"]
    assert [event[1] for event in channel.events[1:]] == [2, 3]


def test_the_messages_settled_before_a_held_one_are_acked_before_it_waits_for_its_store():
    import redis

    from common.messaging import consumer as consumer_module

    outcomes = iter([None, redis.ConnectionError(), None])

    def handler(message, publisher):
        error = next(outcomes)
        if error is not None:
            raise error
        return Result.ack()

    consumer = Consumer(
        url="amqp://unused",
        queue=QUEUE,
        handler=handler,
        topology=topology_consuming(QUEUE),
        unavailable=(redis.ConnectionError,),
    )
    channel = RecordingChannel()
    paused_after: list[list] = []
    consumer._connection = SimpleNamespace(sleep=lambda seconds: paused_after.append(list(channel.events)))
    message = Outgoing(type="t", body={"x": 1})
    original = consumer_module.HOLD_INITIAL_SECONDS
    consumer_module.HOLD_INITIAL_SECONDS = 0.001
    try:
        for tag in (1, 2):
            consumer._on_message(
                channel, SimpleNamespace(delivery_tag=tag), message.properties(), message.encoded_body()
            )
    finally:
        consumer_module.HOLD_INITIAL_SECONDS = original
    assert paused_after and paused_after[0] == [("ack up to", 1)]
    consumer.on_tick()
    assert channel.events == [("ack up to", 1), ("ack up to", 2)]


def test_an_ack_not_sent_when_the_connection_ends_is_dropped_for_the_broker_to_redeliver():
    consumer = Consumer(
        url="amqp://unused", queue=QUEUE, handler=lambda m, p: Result.ack(), topology=topology_consuming(QUEUE)
    )
    channel = RecordingChannel()
    message = Outgoing(type="t", body={"x": 1})
    consumer._on_message(channel, SimpleNamespace(delivery_tag=1), message.properties(), message.encoded_body())
    consumer.on_disconnected()
    consumer.on_tick()
    assert channel.events == []
