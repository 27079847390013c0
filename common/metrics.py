"""Prometheus metrics both services expose. Each process builds its own registry in bootstrap."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    generate_latest,
)

from common.messaging.consumer import Outcome

__all__ = ["CONTENT_TYPE_LATEST", "CollectorRegistry", "ConsumerMetrics", "exposition", "process_registry"]


def process_registry() -> CollectorRegistry:
    """A registry of this process's own, with the library's process, platform and GC metrics."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


class ConsumerMetrics:
    """Messages settled per queue and outcome; its ``observe`` is the Consumer's hook."""

    def __init__(self, registry: CollectorRegistry, queues: Iterable[str] = ()):
        self.messages = Counter(
            "messages_consumed",
            "Messages taken off a work queue, by how they were settled (ack, retry, dead_letter)",
            ["queue", "outcome"],
            registry=registry,
        )
        # Zeros from the start, so a rate or an alert has a series before the first message.
        for queue in queues:
            for outcome in Outcome:
                self.messages.labels(queue=queue, outcome=outcome.value)

    def observe(self, queue: str, outcome: Outcome) -> None:
        self.messages.labels(queue=queue, outcome=outcome.value).inc()


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
