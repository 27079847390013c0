"""``python -m email_service migrate-queues``: bring queues an earlier version declared to the current topology.

Earlier versions routed everything through the default exchange, and their
work, retry and dead-letter queues name it as their dead-letter exchange. The
current topology routes through named exchanges (common.messaging.topology),
and RabbitMQ cannot change the arguments of an existing queue: on such a queue
the services stop at start with PRECONDITION_FAILED.

Run once, with the operator account, while auth and the worker are stopped
(it refuses while a queue has consumers). For each work queue whose family is
of the old kind it moves every message into a holding queue ``Q.migrating``
(retry queues first, the work queue last, so that a retry falling due
meanwhile is still taken), deletes the old queues, declares the new ones and
moves the messages back: retries to the work queue, where they are due at
once, dead letters to the dead-letter queue. Each copy is confirmed by the
broker before its original is acknowledged, so a crash duplicates (the
services deduplicate by message id) and never loses; running it again finishes
the job. Keep RETRY_DELAYS_SECONDS as it was until then: the old retry queues
are found by their names.
"""

from __future__ import annotations

from collections.abc import Callable

import pika
import pika.exceptions

from common.messaging import topology
from common.messaging.connection import close_quietly, parameters
from common.messaging.consumer import republish
from common.messaging.topology import Inbox, Topology, WorkQueue
from email_service.entrypoints.operator import as_operator

# The operator account may publish to the default exchange; no service account can.
DEFAULT_EXCHANGE = ""
HOLDING_SUFFIX = ".migrating"
DESTINATION_HEADER = "x-migrating-to"
DEAD = "dead"
WORK = "work"
PRECONDITION_FAILED = 406
NOT_FOUND = 404


class QueuesInUse(Exception):
    """A queue to migrate still has consumers: the services are running."""


class QueueMigration:
    def __init__(self, rabbitmq_url: str, routes: Topology):
        self._url = rabbitmq_url
        self._routes = routes
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def __enter__(self) -> QueueMigration:
        self._connection = pika.BlockingConnection(parameters(self._url, "email_service migrate-queues"))
        self._open_channel()
        return self

    def __exit__(self, *exc) -> None:
        close_quietly(self._connection)

    def _open_channel(self) -> None:
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()

    def migrate(self) -> dict[str, int | None]:
        """Per work queue: the messages moved, or ``None`` if it was current already."""
        plan = []
        for inbox in (self._routes.worker, self._routes.auth):
            topology.declare_exchanges(self._channel, inbox)
            plan.extend((inbox, queue, self._is_current(inbox, queue)) for queue in inbox.queues)
        # Nothing changes unless every old queue is idle.
        busy = [
            name for _, queue, current in plan if not current for name in _old_family(queue) if self._consumers(name)
        ]
        if busy:
            raise QueuesInUse(f"{', '.join(busy)} still consumed: stop auth and the worker first")
        return {queue.name: self._migrate(inbox, queue, current) for inbox, queue, current in plan}

    def _migrate(self, inbox: Inbox, queue: WorkQueue, current: bool) -> int | None:
        holding = f"{queue.name}{HOLDING_SUFFIX}"
        if not current:
            self._channel.queue_declare(holding, durable=True, arguments={"x-queue-type": "quorum"})

            def set_aside(source: str, headers: dict) -> tuple[str, str]:
                headers[DESTINATION_HEADER] = DEAD if source == queue.dead_letter_queue else WORK
                return DEFAULT_EXCHANGE, holding

            for name in _old_family(queue):
                self._drain(name, set_aside)
                self._channel.queue_delete(name)
            topology.declare_queue(self._channel, inbox, queue)
        elif self._consumers(holding) is None:
            return None

        def bring_back(source: str, headers: dict) -> tuple[str, str]:
            destination = headers.pop(DESTINATION_HEADER, WORK)
            dead = destination in (DEAD, DEAD.encode())
            return inbox.retries_exchange, queue.dead_letter_queue if dead else queue.name

        moved = self._drain(holding, bring_back)
        self._channel.queue_delete(holding)
        return moved

    def _is_current(self, inbox: Inbox, queue: WorkQueue) -> bool:
        try:
            topology.declare_queue(self._channel, inbox, queue)
            return True
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != PRECONDITION_FAILED:
                raise
            self._open_channel()
            return False

    def _consumers(self, queue: str) -> int | None:
        """Consumers of ``queue``; ``None`` if there is no such queue."""
        try:
            return self._channel.queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != NOT_FOUND:
                raise
            self._open_channel()
            return None

    def _drain(self, source: str, route: Callable[[str, dict], tuple[str, str]]) -> int:
        """Copy every message of ``source`` to the (exchange, routing key) ``route(source, headers)``
        names (it may edit the headers), then acknowledge it; how many moved."""
        if self._consumers(source) is None:
            return 0
        moved = 0
        while True:
            method, properties, body = self._channel.basic_get(source, auto_ack=False)
            if method is None:
                return moved
            headers = dict(properties.headers or {})
            exchange, routing_key = route(source, headers)
            republish(self._channel, exchange, routing_key, properties, body, headers)
            self._channel.basic_ack(method.delivery_tag)
            moved += 1


def _old_family(queue: WorkQueue) -> list[str]:
    # Retry queues first: one falling due meanwhile lands in the work queue, drained last.
    return [*queue.retry_queues, queue.dead_letter_queue, queue.name]


def run(rabbitmq_url: str, routes: Topology, out=print) -> int:
    def work() -> int:
        try:
            with QueueMigration(rabbitmq_url, routes) as migration:
                report = migration.migrate()
        except QueuesInUse as error:
            out(f"not migrated: {error}")
            return 1
        for queue, moved in report.items():
            out(f"{queue}: up to date" if moved is None else f"{queue}: migrated, {moved} message(s) moved")
        return 0

    return as_operator("migrate-queues", work, out)
