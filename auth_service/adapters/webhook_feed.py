"""The webhooks queue's subscription to account events, made on the broker when it is first wanted.

Every account event used to be routed to the webhooks queue from the start: one more quorum-queue
write per event for RabbitMQ, and one more delivery, look-up and ack for the dispatcher, even where no
endpoint was ever added. Now the queue is bound to the events exchange by the first endpoint's
creation, before its 201, and by every dispatcher sweep while endpoints exist (a queue deleted and
declared again gets its binding back). It is never unbound: a sweep that unbound after the last endpoint
went could race an endpoint being added, and lose its first events (docs/decisions/webhook-feed.md).
"""

from __future__ import annotations

from auth_service.adapters.rabbitmq import RabbitMessageBus
from common.messaging.topology import Topology, subscribe


class BrokerEventFeed:
    def __init__(self, bus: RabbitMessageBus, topology: Topology, timeout_seconds: float):
        inbox = topology.webhook_inbox
        if inbox is None:
            raise ValueError("this topology has no webhooks queue to subscribe")
        self._bus = bus
        self._inbox = inbox
        self._timeout = timeout_seconds

    def open(self) -> None:
        self._bus.on_link(lambda channel: subscribe(channel, self._inbox), self._timeout)


class InProcessEventFeed:
    """In one process (unit tests): no broker, so nothing to bind."""

    def open(self) -> None:
        pass
