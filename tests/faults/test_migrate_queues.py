"""``python -m email_service migrate-queues`` on queues declared the way earlier versions did."""

from __future__ import annotations

import contextlib
import os

import pika
import pika.exceptions
import pytest

from common.messaging import topology
from common.messaging.connection import close_quietly
from devtools.stack import delete_run, unique_names
from tests.faults.harness import migrate_command

RETRY_DELAYS = (2, 120)


def declare_as_earlier_versions_did(channel, queue: topology.WorkQueue) -> None:
    """Every queue dead-lettered through the default exchange."""
    quorum = {"x-queue-type": "quorum"}
    channel.queue_declare(queue.dead_letter_queue, durable=True, arguments=quorum)
    channel.queue_declare(
        queue.name,
        durable=True,
        arguments={
            **quorum,
            "x-delivery-limit": topology.DELIVERY_LIMIT,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue.dead_letter_queue,
        },
    )
    for delay, retry_queue in zip(queue.retry_delays, queue.retry_queues):
        channel.queue_declare(
            retry_queue,
            durable=True,
            arguments={
                **quorum,
                "x-message-ttl": delay * 1000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue.name,
            },
        )


@pytest.fixture
def earlier_version(private_rabbitmq):
    names = unique_names("migrate")
    routes = topology.Topology(
        names["ACCOUNT_CREATION_QUEUE"],
        names["CONFIRM_EMAIL_CODE_QUEUE"],
        names["ACCOUNT_CONFIRMED_QUEUE"],
        RETRY_DELAYS,
    )
    connection = pika.BlockingConnection(pika.URLParameters(private_rabbitmq.url))
    channel = connection.channel()
    channel.confirm_delivery()
    for name in routes.work_queues:
        declare_as_earlier_versions_did(channel, routes.work_queue(name))
    env = {
        **os.environ,
        **names,
        "APP_ENV": "development",
        "RABBITMQ_URL": private_rabbitmq.url,
        "RETRY_DELAYS_SECONDS": ",".join(map(str, RETRY_DELAYS)),
    }
    yield channel, routes, private_rabbitmq.url, lambda: migrate_command(env)
    connection.close()
    delete_run(private_rabbitmq.url, names, RETRY_DELAYS)


@contextlib.contextmanager
def channel_of(url: str):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        close_quietly(connection)


def publish(channel, queue: str, message_id: str, headers: dict | None = None) -> None:
    channel.basic_publish("", queue, b'{"type": "x"}', pika.BasicProperties(message_id=message_id, headers=headers))


def take_all(channel, queue: str) -> dict[str, dict]:
    taken: dict[str, dict] = {}
    while True:
        method, properties, _ = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return taken
        taken[properties.message_id] = dict(properties.headers or {})


def test_messages_survive_the_move_to_the_current_topology(earlier_version):
    channel, routes, url, migrate = earlier_version
    creation = routes.work_queue(routes.account_creation)
    publish(channel, creation.name, "waiting")
    publish(channel, creation.retry_queue(1), "retrying", {"x-retry-count": 2})
    publish(channel, creation.dead_letter_queue, "dead", {"x-dead-letter-reason": "smtp: 550"})
    publish(channel, routes.account_confirmed, "confirmation")

    # The services cannot start on these queues.
    with channel_of(url) as other, pytest.raises(pika.exceptions.ChannelClosedByBroker, match="inequivalent arg"):
        topology.declare(other, routes.worker)

    # While a service still consumes an old queue, nothing is touched.
    consumer = pika.BlockingConnection(pika.URLParameters(url))
    consumer.channel().basic_consume(routes.account_confirmed, lambda *args: None)
    refused = migrate()
    assert refused.returncode == 1 and "still consumed: stop auth and the worker first" in refused.stdout
    consumer.close()
    assert channel.queue_declare(creation.name, passive=True).method.message_count == 1

    migrated = migrate()
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert f"{creation.name}: migrated, 3 message(s) moved" in migrated.stdout
    assert f"{routes.account_confirmed}: migrated, 1 message(s) moved" in migrated.stdout

    # Both services now declare their queues as they are, and each message is where it belongs.
    with channel_of(url) as other:
        topology.declare(other, routes.worker)
        topology.declare(other, routes.auth)
    waiting = take_all(channel, creation.name)
    assert set(waiting) == {"waiting", "retrying"}
    assert waiting["retrying"]["x-retry-count"] == 2  # its place on the ladder is kept
    dead = take_all(channel, creation.dead_letter_queue)
    assert list(dead) == ["dead"] and dead["dead"]["x-dead-letter-reason"] == "smtp: 550"
    assert list(take_all(channel, routes.account_confirmed)) == ["confirmation"]
    for name in routes.work_queues:
        with channel_of(url) as other, pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
            other.queue_declare(f"{name}.migrating", passive=True)

    again = migrate()
    assert again.returncode == 0
    # The three queues it moved, and the notification queue the current worker declared in the first place.
    assert again.stdout.count(": up to date") == 4
