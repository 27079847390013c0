"""Fakes that stand in for the outside world in unit tests.

``InMemoryBroker`` plays RabbitMQ for both services at once: a publish is
delivered straight to the handler bound to its queue, parsed by the same
envelope code the real consumer uses, and a reply to an RPC goes back to the
request that is waiting for it.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field

import pika

from auth_service.ports import BrokerUnavailable
from common.messaging.consumer import Result
from common.messaging.envelope import Incoming, Outgoing
from common.messaging.topology import Topology

REPLY_INBOX = "in-memory-reply-inbox"


def topology_consuming(queue: str) -> Topology:
    """A topology in which the worker consumes ``queue`` (as its code-request queue)."""
    return Topology(account_creation=queue, confirm_email_code=f"{queue}.codes", account_confirmed=f"{queue}.confirmed")


def as_delivered(message: Outgoing) -> Incoming:
    """What a consumer would receive for this message."""
    return Incoming.parse(message.properties(), message.encoded_body())


@dataclass
class Delivery:
    queue: str
    message: Outgoing
    result: Result | None = None


@dataclass
class InMemoryBroker:
    handlers: dict = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    replies: dict[str, dict] = field(default_factory=dict)
    up: bool = True
    hold: set[str] = field(default_factory=set)

    @property
    def connected(self) -> bool:
        return self.up

    def bind(self, queue: str, handler) -> None:
        self.handlers[queue] = handler

    def publish(self, queue: str, message: Outgoing, timeout: float | None = None) -> None:
        if not self.up:
            raise BrokerUnavailable("broker is down (fake)")
        delivery = Delivery(queue, message)
        self.deliveries.append(delivery)
        handler = self.handlers.get(queue)
        if handler is not None and queue not in self.hold:
            delivery.result = handler(as_delivered(message), self)

    def publish_soon(self, queue: str, message: Outgoing) -> Future[None]:
        """Delivered at once, as ``publish``; the future is done (confirmed) when this returns."""
        self.publish(queue, message)
        confirmed: Future[None] = Future()
        confirmed.set_result(None)
        return confirmed

    def reply(self, reply_to: str, message: Outgoing) -> None:
        if reply_to == REPLY_INBOX and message.correlation_id is not None:
            self.replies[message.correlation_id] = message.body

    def request(self, queue: str, message: Outgoing, timeout: float) -> dict | None:
        correlation_id = message.correlation_id or uuid.uuid4().hex
        addressed = Outgoing(
            type=message.type,
            body=message.body,
            message_id=message.message_id,
            request_id=message.request_id,
            reply_to=REPLY_INBOX,
            correlation_id=correlation_id,
        )
        self.publish(queue, addressed)
        return self.replies.pop(correlation_id, None)

    def sent_to(self, queue: str) -> list[Outgoing]:
        return [delivery.message for delivery in self.deliveries if delivery.queue == queue]

    def release(self, queue: str) -> None:
        """Deliver what was held back on ``queue`` (a worker that was away comes back)."""
        self.hold.discard(queue)
        for delivery in self.deliveries:
            if delivery.queue == queue and delivery.result is None:
                delivery.result = self.handlers[queue](as_delivered(delivery.message), self)


def properties(**kwargs) -> pika.BasicProperties:
    return pika.BasicProperties(**kwargs)


class MailOutbox(list):
    """A mail transport that keeps every rendered mail (its MIME bytes built, as SMTP would carry them)."""

    def deliver(self, mail) -> None:
        mail.as_bytes()
        self.append(mail)

    def close(self) -> None:
        pass


class RecordingMailer:
    """A mailer whose outcome a test can choose; it keeps what it was asked to send."""

    def __init__(self):
        self.sent: list[dict] = []
        self.fail_with: Exception | None = None

    def send(self, template: str, to: str, context) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append({"template": template, "email": to, **context})
