"""How many messages wait in a service's queues, as the ``queue_depth`` metric of its ``/metrics``.

Each service reports the queues it consumes: the work queue and its
dead-letter queue. The broker is asked at scrape time (a passive declare per
queue answers the count of ready messages) on a short-lived connection of the
scraping thread, never on a consumer's; the answer is kept a few seconds, so
several scrapers, or one scraping often, cost the broker one look.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pika
import pika.exceptions
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from common.messaging.connection import CONNECTION_ERRORS, close_quietly, parameters
from common.messaging.topology import WorkQueue

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
# A scrape must answer even while the broker is away: a short bound on the look.
LOOK_TIMEOUT_SECONDS = 2.0
WORK = "work"
DEAD_LETTER = "dead_letter"


def queues_to_watch(queues: Iterable[WorkQueue]) -> list[tuple[str, str]]:
    """(queue name, kind) for each work queue and its dead-letter queue."""
    return [
        (name, kind) for queue in queues for name, kind in ((queue.name, WORK), (queue.dead_letter_queue, DEAD_LETTER))
    ]


class QueueDepths(Collector):
    def __init__(
        self,
        url: str,
        queues: Iterable[WorkQueue],
        client_name: str,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._url = url
        self._watched = queues_to_watch(queues)
        self._client_name = client_name
        self._clock = clock
        self._lock = threading.Lock()
        self._looked_at: float | None = None
        self._depths: dict[tuple[str, str], int] = {}

    def describe(self) -> list:
        # Registration must not reach the broker: the family is named without a look.
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for (queue, kind), depth in self._current().items():
            family.add_metric([queue, kind], depth)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "queue_depth",
            "Messages ready in a queue this service consumes (kind: work, or dead_letter for its dead-letter queue)",
            labels=["queue", "kind"],
        )

    def _current(self) -> dict[tuple[str, str], int]:
        with self._lock:
            now = self._clock()
            if self._looked_at is None or now - self._looked_at >= CACHE_SECONDS:
                self._depths = self._look()
                self._looked_at = now
            return dict(self._depths)

    def _look(self) -> dict[tuple[str, str], int]:
        """The ready count of each watched queue that exists; nothing at all while the broker is away."""
        params = parameters(self._url, self._client_name)
        for node in params:
            node.socket_timeout = LOOK_TIMEOUT_SECONDS
            node.blocked_connection_timeout = LOOK_TIMEOUT_SECONDS
        connection = None
        depths: dict[tuple[str, str], int] = {}
        try:
            connection = pika.BlockingConnection(params)
            channel = connection.channel()
            for queue, kind in self._watched:
                try:
                    declared = channel.queue_declare(queue, passive=True)
                except pika.exceptions.ChannelClosedByBroker:  # not declared yet: the broker closed the channel
                    channel = connection.channel()
                    continue
                depths[(queue, kind)] = declared.method.message_count
        except (*CONNECTION_ERRORS, pika.exceptions.AMQPError) as error:
            # A scrape must answer whatever the broker says: the family is then empty for a while.
            log.debug("queue depths unavailable", extra={"error": repr(error)})
        finally:
            close_quietly(connection)
        return depths
