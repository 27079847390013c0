"""``python -m email_service dlq`` against a real broker, on queues of its own."""

from __future__ import annotations

import json
import os
import subprocess

import pika
import pytest

from common.messaging import topology
from common.messaging.messages import CodeSubmitted
from devtools.stack import delete_queues, unique_names
from tests.faults.harness import dlq_command

SUBMITTED_CODE = "123456"


@pytest.fixture
def dead_letters(private_rabbitmq):
    names = unique_names("dlq")
    queues = [names["ACCOUNT_CREATION_QUEUE"], names["CONFIRM_EMAIL_CODE_QUEUE"], names["ACCOUNT_CONFIRMED_QUEUE"]]
    connection = pika.BlockingConnection(pika.URLParameters(private_rabbitmq.url))
    channel = connection.channel()
    channel.confirm_delivery()
    routes = topology.Topology(*queues)
    topology.declare(channel, routes.worker)
    topology.declare(channel, routes.auth)
    env = {**os.environ, **names, "APP_ENV": "development", "RABBITMQ_URL": private_rabbitmq.url}

    def command(*args: str) -> subprocess.CompletedProcess:
        return dlq_command(env, *args)

    yield channel, queues, command
    connection.close()
    delete_queues(private_rabbitmq.url, queues)


def test_list_show_replay_and_purge(dead_letters):
    channel, (creation, confirm, _), dlq = dead_letters

    # The broker dead-letters a message that keeps coming back (a consumer crashing on it).
    channel.basic_publish(
        topology.TO_WORKER_EXCHANGE, creation, b'{"type": "x"}', pika.BasicProperties(message_id="poison")
    )
    for _ in range(topology.DELIVERY_LIMIT + 1):
        method, _, _ = channel.basic_get(creation)
        if method is None:
            break
        channel.basic_nack(method.delivery_tag, requeue=True)
    # The consumer dead-letters one whose retries ran out, with its reason in the headers.
    submitted = {
        "type": CodeSubmitted.TYPE,
        "purpose": "verify_email",
        "email": "a@example.com",
        "code": SUBMITTED_CODE,
    }
    channel.basic_publish(
        topology.WORKER_RETRIES_EXCHANGE,
        topology.WorkQueue(confirm).dead_letter_queue,
        json.dumps(submitted).encode(),
        pika.BasicProperties(
            message_id="exhausted",
            headers={"x-retry-count": 4, "x-dead-letter-reason": "retries exhausted: smtp: SMTP 451"},
        ),
    )

    listed = dlq("list")
    assert listed.returncode == 0, listed.stderr
    assert f"{creation}.dead: 1 message(s)" in listed.stdout
    assert f"{confirm}.dead: 1 message(s)" in listed.stdout
    assert "poison" in listed.stdout and "broker: delivery_limit" in listed.stdout
    assert "exhausted" in listed.stdout and "retries exhausted: smtp: SMTP 451" in listed.stdout
    as_json = [json.loads(line) for line in dlq("list", "--json").stdout.splitlines()]
    assert {entry["message_id"] for entry in as_json} == {"poison", "exhausted"}

    shown = dlq("show", "exhausted")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["body"]["code"] == "******"
    assert SUBMITTED_CODE not in shown.stdout + shown.stderr
    assert dlq("show", "no-such-message").returncode == 1

    replayed = dlq("replay", "exhausted", "no-such-message")
    assert replayed.returncode == 1  # one of the two was not found
    assert "replayed exhausted" in replayed.stdout and "not found: no-such-message" in replayed.stdout
    method, properties, body = channel.basic_get(confirm, auto_ack=True)
    assert method is not None and properties.message_id == "exhausted"
    assert json.loads(body) == submitted
    assert "x-retry-count" not in properties.headers and "x-dead-letter-reason" not in properties.headers
    assert channel.queue_declare(topology.WorkQueue(confirm).dead_letter_queue, passive=True).method.message_count == 0

    # Listing, showing and a replay of something else left the poison message where it was.
    assert channel.queue_declare(topology.WorkQueue(creation).dead_letter_queue, passive=True).method.message_count == 1
    purged = dlq("purge", "--all")
    assert purged.returncode == 0 and "purged: 1" in purged.stdout
    assert channel.queue_declare(topology.WorkQueue(creation).dead_letter_queue, passive=True).method.message_count == 0


def test_replay_all_resets_broker_death_records(dead_letters):
    channel, (creation, _, _), dlq = dead_letters
    channel.basic_publish(
        topology.TO_WORKER_EXCHANGE, creation, b'{"type": "x"}', pika.BasicProperties(message_id="again")
    )
    for _ in range(topology.DELIVERY_LIMIT + 1):
        method, _, _ = channel.basic_get(creation)
        if method is None:
            break
        channel.basic_nack(method.delivery_tag, requeue=True)

    replayed = dlq("replay", "--all")
    assert replayed.returncode == 0 and "replayed: 1" in replayed.stdout
    method, properties, _ = channel.basic_get(creation, auto_ack=True)
    assert method is not None and properties.message_id == "again"
    assert not any(key.startswith("x-death") or key.startswith("x-first-death") for key in properties.headers or {})


def test_an_unknown_queue_is_refused(dead_letters):
    _, _, dlq = dead_letters
    refused = dlq("list", "--queue", "not-a-work-queue")
    assert refused.returncode == 2
    assert "unknown work queue" in refused.stdout
