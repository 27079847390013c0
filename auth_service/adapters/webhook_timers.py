"""Webhook attempts scheduled with the broker, on the delay machinery of the retry ladder.

A retry after ``d`` seconds is a message published into the webhooks queue's
retry queue of ``d`` seconds (a fixed TTL per queue: a short wait never queues
behind a long one); when it runs out the broker dead-letters it back into the
webhooks queue, where a dispatcher takes it up (common/messaging/topology.py).
An attempt due now goes into the webhooks queue directly.
"""

from __future__ import annotations

from auth_service.ports import MessageBus
from common.messaging.messages import WebhookAttemptDue
from common.messaging.topology import WorkQueue


class BrokerWebhookTimers:
    def __init__(self, bus: MessageBus, queue: WorkQueue, publish_timeout_seconds: float):
        self._bus = bus
        self._queue = queue
        self._retry_queues = dict(zip(queue.retry_delays, queue.retry_queues))
        self._timeout = publish_timeout_seconds

    def due(self, delivery_id: str, endpoint_id: str, failed_attempts: int | None, delay_seconds: int) -> None:
        if delay_seconds <= 0:
            destination = self._queue.name
        else:
            destination = self._retry_queues.get(delay_seconds, "")
            if not destination:
                raise ValueError(f"no retry queue waits {delay_seconds} s: the delays are WEBHOOK_RETRY_SCHEDULE's")
        message = WebhookAttemptDue(delivery_id, endpoint_id, failed_attempts).outgoing()
        self._bus.publish(destination, message, timeout=self._timeout)
