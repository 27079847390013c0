"""What the comparison benchmark puts on the broker, how it reads a process tree's cost,
and how it takes everything away again.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pika
import redis

from common.messaging import topology
from common.messaging.consumer import publish
from common.messaging.envelope import Outgoing
from common.messaging.messages import CodeRequested, Purpose
from devtools.stack import delete_queues

log = logging.getLogger("bench")

# Every queue and key prefix of this benchmark starts so, apart from other runs on the shared servers.
RUN_PREFIX = "bench-compare"


def code_request(email: str, name: str | None) -> Outgoing:
    """A code request as the auth service publishes one for a registration (CodeClient.request),
    with the user id and request id it would have."""
    return CodeRequested(
        purpose=Purpose.VERIFY_EMAIL, user_id=uuid.uuid4().hex, email=email, requested_at=time.time(), name=name
    ).outgoing(message_id=secrets.token_hex(16), request_id=uuid.uuid4().hex)


def run_topology(names: dict[str, str]) -> topology.Topology:
    """The queues of a run, as the services read them from the names ``unique_names`` handed out."""
    return topology.Topology(
        account_creation=names["ACCOUNT_CREATION_QUEUE"],
        confirm_email_code=names["CONFIRM_EMAIL_CODE_QUEUE"],
        account_confirmed=names["ACCOUNT_CONFIRMED_QUEUE"],
        events_exchange=names["ACCOUNT_EVENTS_EXCHANGE"],
    )


def declare_worker_queues(rabbitmq_url: str, routes: topology.Topology) -> None:
    """The worker's queues, retry and dead-letter queues and bindings, as the worker declares them,
    so that messages published before it starts have a route."""
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        topology.declare(connection.channel(), routes.worker)
    finally:
        connection.close()


def publish_code_requests(rabbitmq_url: str, routes: topology.Topology, count: int, tag: str) -> None:
    """Put ``count`` code requests, one address each, where auth publishes them (through the worker's exchange)."""
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        # Confirmed one by one: a message the broker dropped (a quorum queue's publish left unconfirmed
        # when the connection closed) would leave the run a message short, found only by wait_for_depth.
        channel.confirm_delivery()
        for index in range(count):
            publish(
                channel,
                routes,
                routes.account_creation,
                code_request(f"user{index}.{tag}@example.com", f"User {index}"),
            )
    finally:
        connection.close()


def queue_depths(rabbitmq_url: str, queues: list[str]) -> dict[str, int]:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        return {name: channel.queue_declare(name, passive=True).method.message_count for name in queues}
    finally:
        connection.close()


def wait_for_depth(rabbitmq_url: str, queue: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (depth := queue_depths(rabbitmq_url, [queue])[queue]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {depth} of {count} messages reached {queue}")
        time.sleep(0.1)


def parked_messages(rabbitmq_url: str, queue: str) -> int:
    """Messages a run left in the retry ladder or the dead-letter queue of ``queue``."""
    work = topology.WorkQueue(queue)
    return sum(queue_depths(rabbitmq_url, [work.dead_letter_queue, *work.retry_queues]).values())


@dataclass
class Leftovers:
    """Everything a run puts on the shared servers, removed by ``remove`` even after a failure.

    Removing is idempotent: each run removes its own at its end, and the
    benchmark removes all of them once more on the way out.
    """

    rabbitmq_url: str
    redis_url: str
    work_queues: list[str] = field(default_factory=list)
    plain_queues: list[str] = field(default_factory=list)
    redis_prefixes: list[str] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)

    def add_names(self, names: dict[str, str]) -> None:
        self.work_queues += [value for key, value in names.items() if key.endswith("_QUEUE")]
        self.redis_prefixes += [value for key, value in names.items() if key.endswith("_KEY_PREFIX")]
        self.exchanges += [value for key, value in names.items() if key.endswith("_EXCHANGE")]

    def remove(self, patience: float = 60.0) -> None:
        """Delete every queue and key; a server that does not answer is tried again for ``patience`` seconds,
        since a broker left holding queues of runs gone by runs out of file handles."""
        steps: list[tuple[str, list[str], Callable[[], None]]] = [
            ("work queues (with their retry and dead-letter queues)", self.work_queues, self._delete_work_queues),
            ("queues", self.plain_queues, self._delete_plain_queues),
            ("Redis keys under", self.redis_prefixes, self._delete_redis_keys),
        ]
        deadline = time.monotonic() + patience
        for what, names, step in steps:
            while names:
                try:
                    step()
                    break
                except Exception as error:  # one server away must not keep the other's leftovers
                    if time.monotonic() > deadline:
                        log.error("could not remove the benchmark's %s %s: %r", what, ", ".join(names), error)
                        break
                    time.sleep(2)

    @classmethod
    def all_of(cls, runs: list[Leftovers]) -> Leftovers:
        """One ``Leftovers`` for several runs on the same servers, so that one patience covers them all."""
        merged = cls(runs[0].rabbitmq_url, runs[0].redis_url) if runs else cls("", "")
        for run in runs:
            merged.work_queues += run.work_queues
            merged.plain_queues += run.plain_queues
            merged.redis_prefixes += run.redis_prefixes
            merged.exchanges += run.exchanges
        return merged

    def _delete_work_queues(self) -> None:
        delete_queues(self.rabbitmq_url, self.work_queues, exchanges=self.exchanges)

    def _delete_plain_queues(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.rabbitmq_url))
        try:
            channel = connection.channel()
            for name in self.plain_queues:
                channel.queue_delete(name)
        finally:
            connection.close()

    def _delete_redis_keys(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            for prefix in self.redis_prefixes:
                keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
                for start in range(0, len(keys), 1000):
                    client.delete(*keys[start : start + 1000])
        finally:
            client.close()
