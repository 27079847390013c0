"""A consumer thread that owns its connection and acks only after the work is done.

A queue's handler is usually a ``Router``: its table of message classes
checks the type and parses the body once, then calls the handler for that
type. Handlers return what should happen to the message; this loop does it:
ack, park it in a retry queue (the broker redelivers it later), or move it to
the dead-letter queue with the reason in its headers. A handler that raises
is treated as a transient failure, so a bug never loses a message and never
requeues it in a hot loop. The connection itself is kept by
``ConnectionThread`` (common.messaging.connection).

A handler that raises one of the ``unavailable`` errors (Redis or MongoDB
unreachable) says nothing about the message, only about a store it needs.
Such a message is not spent on the retry ladder: the consumer keeps it in
hand, pauses with capped back-off while still serving heartbeats, and runs
the handler again once the store answers. A short outage therefore costs
time, never a dead-lettered registration.

Acks are sent per batch: pika hands over the deliveries of one read
together, and once each of them is settled (handled, parked or
dead-lettered), one ``multiple`` ack covers them all. A message is still
acked only after its work is done; what the batch adds is that a worker
dying after a mail but before the batch's ack has that message redelivered,
which its handler already answers as done (a code mailed once per message
id, a verdict remembered). One ack instead of one per message spares a
socket flush per message here and work in the broker
(docs/decisions/batched-acks.md).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pika
import pika.exceptions

from common.messaging.connection import CONNECTION_ERRORS, Backoff, ConnectionThread
from common.messaging.envelope import (
    DEAD_REASON_HEADER,
    ORIGINAL_QUEUE_HEADER,
    RETRY_COUNT_HEADER,
    Incoming,
    MalformedMessage,
    Outgoing,
)
from common.messaging.messages import Message
from common.messaging.topology import REPLIES_EXCHANGE, Topology, declare
from common.tracing import processing, publishing, republishing

log = logging.getLogger(__name__)

HOLD_INITIAL_SECONDS = 0.5
HOLD_MAX_SECONDS = 10.0

__all__ = ["CONNECTION_ERRORS", "Consumer", "Delivered", "Outcome", "Result", "Router"]


class Outcome(enum.Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str = ""

    @classmethod
    def ack(cls) -> Result:
        return cls(Outcome.ACK)

    @classmethod
    def retry(cls, reason: str) -> Result:
        return cls(Outcome.RETRY, reason)

    @classmethod
    def dead_letter(cls, reason: str) -> Result:
        return cls(Outcome.DEAD_LETTER, reason)


class ChannelPublisher:
    """Publishes on the consumer's own channel (in confirm mode), from its own thread.

    Replies go on ``reply_channel`` (by default the same): a reply is worth nothing once its
    requester stopped waiting, so a publisher confirm would only hold the consumer until it came.
    """

    def __init__(self, channel, topology: Topology, reply_channel=None):
        self._channel = channel
        self._reply_channel = reply_channel if reply_channel is not None else channel
        self._topology = topology

    def publish(self, queue: str, message: Outgoing) -> None:
        with publishing(queue, message) as traced:
            publish(self._channel, self._topology, queue, traced)

    def reply(self, reply_to: str, message: Outgoing) -> None:
        # The requester may be gone; a reply nobody waits for is simply dropped.
        with publishing(REPLIES_EXCHANGE, message) as traced:
            self._reply_channel.basic_publish(
                exchange=REPLIES_EXCHANGE,
                routing_key=reply_to,
                body=traced.encoded_body(),
                properties=traced.properties(),
            )


M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Delivered(Generic[M]):
    """A delivery whose type was checked and whose body parsed into ``message``."""

    message: M
    envelope: Incoming

    @property
    def message_id(self) -> str:
        return self.envelope.message_id

    @property
    def request_id(self) -> str | None:
        return self.envelope.request_id

    @property
    def reply_to(self) -> str | None:
        return self.envelope.reply_to

    @property
    def correlation_id(self) -> str | None:
        return self.envelope.correlation_id


Handler = Callable[[Incoming, ChannelPublisher], Result]
Observer = Callable[[str, Outcome], None]


class Router:
    """The type-to-handler table of one queue: checks the type and parses the body, once.

    A type the queue does not take, or a body its class refuses, is
    dead-lettered with the reason before any handler runs.
    """

    def __init__(self, routes: Mapping[type[Message], Callable[[Delivered[Any], Any], Result]]):
        self._table: dict[str, tuple[type[Message], Callable[[Delivered[Any], Any], Result]]] = {}
        for message_class, handler in routes.items():
            for message_type in (message_class.TYPE, *message_class.LEGACY_TYPES):
                self._table[message_type] = (message_class, handler)

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._table)

    def __call__(self, message: Incoming, publisher) -> Result:
        route = self._table.get(message.type)
        if route is None:
            return Result.dead_letter(f"unexpected message type {message.type[:60]!r}")
        message_class, handler = route
        try:
            parsed = message_class.parse(message)
        except MalformedMessage as error:
            return Result.dead_letter(f"malformed: {error}")
        return handler(Delivered(parsed, message), publisher)


class Consumer(ConnectionThread):
    def __init__(
        self,
        *,
        url: str,
        queue: str,
        handler: Handler,
        topology: Topology,
        prefetch: int = 4,
        name: str | None = None,
        observe: Observer | None = None,
        bind_request_id: Callable[[str | None], None] | None = None,
        unavailable: tuple[type[Exception], ...] = (),
    ):
        super().__init__(url, name=name or f"consumer:{queue}")
        self._topology = topology
        self._inbox = topology.inbox_of(queue)
        self._queue = topology.work_queue(queue)
        self._unavailable = unavailable
        self._handler = handler
        self._prefetch = prefetch
        self._observe = observe or (lambda queue, outcome: None)
        self._bind_request_id = bind_request_id or (lambda request_id: None)
        self._reply_channel = None
        # The last delivery settled since the batch's ack: every earlier one on the channel is settled too.
        self._settled: tuple[Any, int] | None = None

    def log_context(self) -> dict:
        return {"queue": self._queue.name}

    def on_connected(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        channel.confirm_delivery()
        declare(channel, self._inbox)
        channel.basic_qos(prefetch_count=self._prefetch)
        channel.basic_consume(self._queue.name, self._on_message)
        # Without confirm mode: the requester's wait is what a reply's delivery is checked by.
        self._reply_channel = connection.channel()

    def on_tick(self) -> None:
        # Called after each pass over the connection's events, so after each batch of deliveries.
        self._ack_settled()

    def on_disconnected(self) -> None:
        # An ack not sent dies with its connection: the broker redelivers those messages.
        self._settled = None

    def _ack_settled(self) -> None:
        if self._settled is not None:
            (channel, delivery_tag), self._settled = self._settled, None
            channel.basic_ack(delivery_tag, multiple=True)

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        with processing(self._queue.name, properties.headers, properties.message_id):
            self._process(channel, method, properties, body)

    def _process(self, channel, method, properties, body: bytes) -> None:
        if self._stopping.is_set():
            # pika hands over every prefetched delivery in one go; once asked to
            # stop, finish only the message in hand and give the rest back.
            self._ack_settled()
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        try:
            message = Incoming.parse(properties, body)
        except MalformedMessage as error:
            self._bind_request_id(None)
            self._settle(channel, method, properties, body, Result.dead_letter(f"malformed: {error}"))
            return
        self._bind_request_id(message.request_id)
        try:
            result = self._handle_when_available(message, channel)
        except (*CONNECTION_ERRORS, pika.exceptions.AMQPChannelError):
            raise  # not acked: the broker redelivers it once we reconnect
        except Exception as error:
            log.exception("handler failed", extra={"queue": self._queue.name, "message_type": message.type})
            result = Result.retry(f"unexpected {type(error).__name__}")
        if result is None:
            # Stopping while a store is down: hand the message back untouched.
            self._ack_settled()
            channel.basic_nack(method.delivery_tag, requeue=True)
        else:
            self._settle(channel, method, properties, body, result)
        self._bind_request_id(None)

    def _handle_when_available(self, message: Incoming, channel) -> Result | None:
        """Run the handler; while a store it needs is down, hold the message and try again."""
        pause = Backoff(self._pause, HOLD_INITIAL_SECONDS, HOLD_MAX_SECONDS)
        while True:
            try:
                return self._handler(message, ChannelPublisher(channel, self._topology, self._reply_channel))
            except self._unavailable as error:
                if self._stopping.is_set():
                    return None
                log.warning(
                    "a store is unavailable, message held",
                    extra={"queue": self._queue.name, "error": type(error).__name__, "pause": pause.delay},
                )
                pause.wait()

    def _pause(self, seconds: float) -> None:
        # connection.sleep keeps heartbeats flowing and, inside a delivery
        # callback, dispatches no other delivery. The messages done before this one
        # are not held with it.
        self._ack_settled()
        connection = self._connection
        if connection is None:  # no connection whose heartbeats to keep
            self._stopping.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            connection.sleep(min(remaining, 0.5))

    def _settle(self, channel, method, properties, body: bytes, result: Result) -> None:
        headers = dict(properties.headers or {})
        outcome = result.outcome
        if outcome is Outcome.RETRY:
            retries = headers.get(RETRY_COUNT_HEADER, 0)
            retries = retries if isinstance(retries, int) and retries >= 0 else 0
            if retries >= self._queue.max_retries:
                outcome = Outcome.DEAD_LETTER
                result = Result.dead_letter(f"retries exhausted: {result.reason}")
            else:
                headers[RETRY_COUNT_HEADER] = retries + 1
                self._republish(channel, self._queue.retry_queue(retries), properties, body, headers)
                log.warning(
                    "message parked for retry",
                    extra={"queue": self._queue.name, "retry": retries + 1, "reason": result.reason},
                )
        if outcome is Outcome.DEAD_LETTER:
            headers[DEAD_REASON_HEADER] = result.reason[:500]
            headers[ORIGINAL_QUEUE_HEADER] = self._queue.name
            self._republish(channel, self._queue.dead_letter_queue, properties, body, headers)
            log.error("message dead-lettered", extra={"queue": self._queue.name, "reason": result.reason})
        self._settled = (channel, method.delivery_tag)
        if outcome is not Outcome.ACK:
            # Its copy is on the retry ladder or in the dead letters: acked now, so that a connection lost later
            # in the batch cannot have the broker deliver the original beside its copy.
            self._ack_settled()
        else:
            log.info(
                "message handled",
                extra={"queue": self._queue.name, "message_type": properties.type, "message_id": properties.message_id},
            )
        self._observe(self._queue.name, outcome)

    def _republish(self, channel, queue: str, properties, body: bytes, headers: dict) -> None:
        with republishing(queue, headers, properties.message_id):
            republish(channel, self._inbox.retries_exchange, queue, properties, body, headers)


def publish(channel, routes: Topology, queue: str, message: Outgoing) -> None:
    """Publish to ``queue`` through the exchange its producer may write, mandatory: no route is an error.

    ``queue`` may also be an account event's routing key (``user.*``), published on the events exchange."""
    exchange, routing_key, mandatory = routes.route(queue)
    channel.basic_publish(
        exchange=exchange,
        routing_key=routing_key,
        body=message.encoded_body(),
        properties=message.properties(),
        mandatory=mandatory,
    )


def republish(channel, exchange: str, queue: str, properties: pika.BasicProperties, body: bytes, headers: dict) -> None:
    """Publish a persistent copy of a delivered message to ``queue`` (through ``exchange``) with new headers.

    On a channel in confirm mode this returns only once the broker has the copy (else it raises).
    """
    copy = pika.BasicProperties(
        content_type=properties.content_type,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=properties.message_id,
        type=properties.type,
        reply_to=properties.reply_to,
        correlation_id=properties.correlation_id,
        headers=headers,
    )
    channel.basic_publish(exchange=exchange, routing_key=queue, body=body, properties=copy, mandatory=True)
