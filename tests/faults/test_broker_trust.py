"""Broker trust (docs/security.md, "Broker trust"): each service on a broker account of its own.

A private RabbitMQ node starts with docker/rabbitmq/rabbitmq.conf, loading the
definitions ``python -m common.messaging.access`` renders from the settings,
as compose's broker does. Both services run on it, each with its own account,
and a registration goes all the way through. Then each account tries what only
the other service may do: publish where the other publishes, consume or bind
the other's queues. The attack of the finding, an ``account.confirmed`` for a
user id taken from a 201, is refused to auth's account and leaves the account
pending, while the same message from the worker's account (its rightful sender)
does confirm it: the refusal is the permissions' doing, not the message's.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
import pytest

from common.messaging.access import Account, BrokerAccounts, render
from common.messaging.envelope import Outgoing
from common.messaging.messages import CodeRequested, CodeVerified, Purpose
from common.messaging.topology import (
    AUTH_RETRIES_EXCHANGE,
    REPLIES_EXCHANGE,
    REPLY_QUEUE_PREFIX,
    TO_AUTH_EXCHANGE,
    TO_WORKER_EXCHANGE,
    WORKER_RETRIES_EXCHANGE,
    Topology,
)
from devtools.stack import ROOT, LocalStack, delete_queues, http_json, unique_names
from tests.faults.harness import dlq_command
from tests.faults.private_rabbitmq import PrivateRabbitMQ, start_private_rabbitmq
from tests.observability import metric_samples

PASSWORD = "correct horse battery staple"
RETRY_DELAYS = (1, 3)
CONTAINER_DEFINITIONS = "/etc/rabbitmq/definitions/definitions.json"

REFUSED = "refused"
UNROUTABLE = "unroutable"
DELIVERED = "delivered"


@dataclass
class TrustedBroker:
    broker: PrivateRabbitMQ
    accounts: BrokerAccounts
    names: dict[str, str]
    routes: Topology

    def url(self, role: str) -> str:
        account = self.accounts.by_role()[role]
        return self.broker.url_for(account.user, account.password)

    def connect(self, role: str) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.url(role)))


@pytest.fixture(scope="module")
def trusted(tmp_path_factory):
    base = tmp_path_factory.mktemp("trusted-rabbitmq")
    names = unique_names("trust")
    accounts = BrokerAccounts(
        admin=Account("trust-admin", secrets.token_urlsafe(24)),
        auth=Account("trust-auth", secrets.token_urlsafe(24)),
        worker=Account("trust-worker", secrets.token_urlsafe(24)),
    )
    definitions = base / "definitions.json"
    render(
        definitions,
        {
            **names,
            "RETRY_DELAYS_SECONDS": ",".join(map(str, RETRY_DELAYS)),
            **{f"RABBITMQ_{role.upper()}_USER": account.user for role, account in accounts.by_role().items()},
            **{f"RABBITMQ_{role.upper()}_PASSWORD": account.password for role, account in accounts.by_role().items()},
        },
    )
    # The very file compose mounts, pointed at this node's copy of the definitions.
    config = (ROOT / "docker" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert CONTAINER_DEFINITIONS in config
    broker = start_private_rabbitmq(base, config.replace(CONTAINER_DEFINITIONS, str(definitions)))
    routes = Topology(
        names["ACCOUNT_CREATION_QUEUE"],
        names["CONFIRM_EMAIL_CODE_QUEUE"],
        names["ACCOUNT_CONFIRMED_QUEUE"],
        RETRY_DELAYS,
        account_notifications=names["ACCOUNT_NOTIFICATIONS_QUEUE"],
        events_exchange=names["ACCOUNT_EVENTS_EXCHANGE"],
    )
    yield TrustedBroker(broker, accounts, names, routes)
    broker.stop()


@pytest.fixture(scope="module")
def stack(trusted, private_redis, tmp_path_factory):
    """Both services on the private node, each logged in with its own account."""
    running = LocalStack(
        tmp_path_factory.mktemp("trusted-stack"),
        {
            **trusted.names,
            "RETRY_DELAYS_SECONDS": ",".join(map(str, RETRY_DELAYS)),
            "REDIS_URL": private_redis.url,
            "RATELIMIT_STORAGE_URI": private_redis.url,
            "RATELIMIT_ENABLED": "false",
            "BCRYPT_ROUNDS": "4",
            "RESEND_COOLDOWN_SECONDS": "0",
            "RABBITMQ_URL": "amqp://nobody:nothing@127.0.0.1:1/%2F",  # each service gets its own below
        },
        auth_overrides={"RABBITMQ_URL": trusted.url("auth")},
        worker_overrides={"RABBITMQ_URL": trusted.url("worker")},
    )
    running.start()
    yield running
    running.stop()
    delete_queues(trusted.url("admin"), trusted.routes.work_queues, RETRY_DELAYS)


def register(stack: LocalStack, email: str) -> str:
    status, _, body = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201, body
    return body["id"]


def login_status(stack: LocalStack, email: str) -> int:
    return stack.call("POST", "/auth/login", {"email": email, "password": PASSWORD})[0]


def new_email() -> str:
    return f"trust-{uuid.uuid4().hex[:12]}@example.com"


def attempt_publish(trusted: TrustedBroker, role: str, exchange: str, routing_key: str, message: Outgoing) -> str:
    """Publish with publisher confirms, mandatory; what the broker made of it."""
    connection = trusted.connect(role)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, message.encoded_body(), message.properties(), mandatory=True)
        return DELIVERED
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 403, error  # ACCESS_REFUSED, not some other failure
        return REFUSED
    except pika.exceptions.UnroutableError:
        return UNROUTABLE
    finally:
        connection.close()


def attempt(trusted: TrustedBroker, role: str, operation) -> str:
    """Run ``operation(channel)`` on a fresh channel of ``role``'s account: refused or allowed."""
    connection = trusted.connect(role)
    try:
        operation(connection.channel())
        return DELIVERED
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 403, error
        return REFUSED
    finally:
        connection.close()


def probe() -> Outgoing:
    # A type no handler accepts: whoever receives it dead-letters it, and nothing else happens.
    return Outgoing(type="trust.probe", body={"probe": True})


def test_the_broker_knows_exactly_the_three_accounts(trusted):
    listed = trusted.broker.ctl("list_users", "--silent").splitlines()
    users = {line.split("\t")[0] for line in listed if line.strip()}
    assert users == {"trust-admin", "trust-auth", "trust-worker"}, "no guest, nobody else"


def test_each_service_runs_a_registration_through_on_its_own_account(stack, trusted):
    email = new_email()
    register(stack, email)
    [mail] = stack.sink.wait_for(email, 1, timeout=20)
    # 200, not 202: the worker's verdict came back on auth's reply queue.
    status, _, body = stack.call("POST", "/auth/confirm", {"email": email, "code": mail.code})
    assert (status, body["status"]) == (200, "verified")
    assert login_status(stack, email) == 200
    # And the worker's confirmation reached auth's own queue, consumed on auth's account.
    confirmed = ("messages_consumed_total", (("outcome", "ack"), ("queue", trusted.routes.account_confirmed)))
    deadline = time.monotonic() + 10
    while metric_samples(http_json("GET", f"{stack.base_url}/metrics")[2]).get(confirmed) != 1:
        assert time.monotonic() < deadline, "auth never consumed the confirmation"
        time.sleep(0.2)
    # Each service reads the depth of its own queues, and of their dead letters, on its own account.
    routes = trusted.routes
    for url, queues in (
        (stack.base_url, [routes.account_confirmed]),
        (stack.worker_status_url, [routes.account_creation, routes.confirm_email_code]),
    ):
        depths = metric_samples(http_json("GET", f"{url}/metrics")[2])
        for queue in queues:
            assert ("queue_depth", (("kind", "work"), ("queue", queue))) in depths, (url, queue)
            assert ("queue_depth", (("kind", "dead_letter"), ("queue", f"{queue}.dead"))) in depths, (url, queue)


def test_what_each_account_may_publish_where(stack, trusted):
    routes = trusted.routes
    creation, confirm, confirmed = routes.account_creation, routes.confirm_email_code, routes.account_confirmed
    first_retry = {name: routes.work_queue(name).retry_queue(0) for name in routes.work_queues}
    events = routes.events_exchange
    # auth's account declares the account-events exchange, on which it publishes.
    assert attempt(trusted, "auth", lambda c: c.exchange_declare(events, "topic", durable=True)) == DELIVERED
    expected = {
        # auth: only its own messages to the worker, and its own retry route.
        ("auth", "", confirmed): REFUSED,  # the default exchange reaches every queue by name: nobody has it
        ("auth", "", creation): REFUSED,
        ("auth", TO_AUTH_EXCHANGE, confirmed): REFUSED,  # the worker's confirmations
        ("auth", REPLIES_EXCHANGE, f"{REPLY_QUEUE_PREFIX}{uuid.uuid4().hex}"): REFUSED,  # the worker's verdicts
        ("auth", WORKER_RETRIES_EXCHANGE, creation): REFUSED,
        ("auth", WORKER_RETRIES_EXCHANGE, first_retry[creation]): REFUSED,
        ("auth", TO_WORKER_EXCHANGE, confirmed): UNROUTABLE,  # its own exchange leads only to the worker's queues
        ("auth", TO_WORKER_EXCHANGE, creation): DELIVERED,
        ("auth", TO_WORKER_EXCHANGE, confirm): DELIVERED,
        # Allowed, and nobody's yet: the worker does not mail about it, and the webhook dispatcher's queue
        # takes account events only once an endpoint exists (adapters/webhook_feed.py).
        ("auth", events, "user.registered"): UNROUTABLE,
        ("auth", events, "user.verified"): DELIVERED,  # the worker's notification queue is bound to it
        ("auth", events, "other.thing"): REFUSED,  # topic permission: user.* only
        # The end of a lock: into auth's own delay queue, through its own retry route.
        ("auth", AUTH_RETRIES_EXCHANGE, f"{confirmed}.delayed"): DELIVERED,
        # The end of a deletion's grace: into auth's long delay queue, the same way.
        ("auth", AUTH_RETRIES_EXCHANGE, f"{confirmed}.delayed.long"): DELIVERED,
        # A consumer parks its own retries; the ladder brings them back to its own queue.
        ("auth", AUTH_RETRIES_EXCHANGE, first_retry[confirmed]): DELIVERED,
        # A webhook retry: into the dispatcher's retry queue of that delay, which brings it back to its queue.
        ("auth", AUTH_RETRIES_EXCHANGE, f"{trusted.names['WEBHOOKS_QUEUE']}.retry.5s"): DELIVERED,
        ("worker", AUTH_RETRIES_EXCHANGE, trusted.names["WEBHOOKS_QUEUE"]): REFUSED,
        # the worker: only confirmations and verdicts to auth, and its own retry route.
        ("worker", "", creation): REFUSED,
        ("worker", "", confirmed): REFUSED,
        ("worker", TO_WORKER_EXCHANGE, creation): REFUSED,  # registrations
        ("worker", TO_WORKER_EXCHANGE, confirm): REFUSED,  # code submissions
        ("worker", AUTH_RETRIES_EXCHANGE, confirmed): REFUSED,
        ("worker", events, "user.verified"): REFUSED,
        ("worker", AUTH_RETRIES_EXCHANGE, f"{confirmed}.delayed"): REFUSED,
        ("worker", AUTH_RETRIES_EXCHANGE, f"{confirmed}.delayed.long"): REFUSED,
        ("worker", TO_AUTH_EXCHANGE, creation): UNROUTABLE,
        ("worker", REPLIES_EXCHANGE, creation): UNROUTABLE,
        ("worker", TO_AUTH_EXCHANGE, confirmed): DELIVERED,
        ("worker", WORKER_RETRIES_EXCHANGE, first_retry[creation]): DELIVERED,
    }
    found = {case: attempt_publish(trusted, *case, probe()) for case in expected}
    assert found == expected


def test_neither_account_can_consume_bind_or_delete_the_other_services_queues(stack, trusted):
    routes = trusted.routes
    creation, confirm, confirmed = routes.account_creation, routes.confirm_email_code, routes.account_confirmed
    expected = {
        ("auth", "get", creation): REFUSED,
        ("auth", "consume", confirm): REFUSED,
        ("auth", "get", routes.work_queue(creation).retry_queue(0)): REFUSED,
        ("auth", "bind own queue to its outgoing exchange", confirmed): REFUSED,
        ("auth", "bind to its retry exchange", creation): REFUSED,
        ("auth", "delete", creation): REFUSED,
        ("worker", "get", confirmed): REFUSED,
        ("worker", "get", routes.work_queue(confirmed).dead_letter_queue): REFUSED,
        ("worker", "bind own queue to its outgoing exchange", creation): REFUSED,
        ("worker", "bind to its retry exchange", confirmed): REFUSED,
        ("worker", "delete", confirmed): REFUSED,
        # Each may still read its own queue (the services consume it right now).
        ("auth", "get", confirmed): DELIVERED,
        ("worker", "get", creation): DELIVERED,
    }
    outgoing = {"auth": TO_WORKER_EXCHANGE, "worker": TO_AUTH_EXCHANGE}
    retries = {"auth": AUTH_RETRIES_EXCHANGE, "worker": WORKER_RETRIES_EXCHANGE}

    def operation(role: str, verb: str, queue: str):
        return {
            "get": lambda channel: channel.basic_get(queue, auto_ack=False),
            "consume": lambda channel: channel.basic_consume(queue, lambda *args: None),
            "bind own queue to its outgoing exchange": lambda channel: channel.queue_bind(
                queue, outgoing[role], routing_key=f"hijack-{uuid.uuid4().hex}"
            ),
            "bind to its retry exchange": lambda channel: channel.queue_bind(
                queue, retries[role], routing_key=f"hijack-{uuid.uuid4().hex}"
            ),
            "delete": lambda channel: channel.queue_delete(queue),
        }[verb]

    found = {case: attempt(trusted, case[0], operation(*case)) for case in expected}
    assert found == expected


def registration_sequence(trusted: TrustedBroker, stack: LocalStack, email: str) -> tuple[str, int]:
    """Register ``email`` and read, from a copy of the code request, the sequence a confirmation must carry."""
    connection = trusted.connect("admin")
    try:
        channel = connection.channel()
        tap = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(tap, TO_WORKER_EXCHANGE, routing_key=trusted.routes.account_creation)
        user_id = register(stack, email)
        deadline = time.monotonic() + 10
        while True:
            method, _, body = channel.basic_get(tap, auto_ack=True)
            if method is not None and json.loads(body).get("email") == email:
                return user_id, json.loads(body)["sequence"]
            assert time.monotonic() < deadline, "no copy of the code request"
            time.sleep(0.05)
    finally:
        connection.close()


def test_a_confirmation_forged_on_auths_account_verifies_nobody(stack, trusted):
    email = new_email()
    user_id, sequence = registration_sequence(trusted, stack, email)
    stack.sink.wait_for(email, 1, timeout=20)
    forged = CodeVerified(user_id=user_id, email=email, sequence=sequence).outgoing()
    confirmed = trusted.routes.account_confirmed
    for exchange in ("", TO_AUTH_EXCHANGE):
        assert attempt_publish(trusted, "auth", exchange, confirmed, forged) == REFUSED
    assert attempt_publish(trusted, "auth", TO_WORKER_EXCHANGE, confirmed, forged) == UNROUTABLE
    time.sleep(1.0)
    assert login_status(stack, email) == 403  # still email_not_verified

    # The same message from the account allowed to send it does confirm the user.
    assert attempt_publish(trusted, "worker", TO_AUTH_EXCHANGE, confirmed, forged) == DELIVERED
    deadline = time.monotonic() + 10
    while login_status(stack, email) != 200:
        assert time.monotonic() < deadline, "the rightful confirmation was not applied"
        time.sleep(0.2)


def test_a_registration_forged_on_the_workers_account_mails_nobody(stack, trusted):
    email = new_email()
    forged = CodeRequested(
        purpose=Purpose.VERIFY_EMAIL, user_id=uuid.uuid4().hex, email=email, requested_at=time.time()
    ).outgoing(message_id=secrets.token_hex(16))
    creation = trusted.routes.account_creation
    for exchange in ("", TO_WORKER_EXCHANGE):
        assert attempt_publish(trusted, "worker", exchange, creation, forged) == REFUSED
    assert attempt_publish(trusted, "worker", TO_AUTH_EXCHANGE, creation, forged) == UNROUTABLE
    time.sleep(1.0)
    assert stack.sink.mails_to(email) == []

    # The same message from auth's account, its rightful sender, is mailed.
    assert attempt_publish(trusted, "auth", TO_WORKER_EXCHANGE, creation, forged) == DELIVERED
    assert len(stack.sink.wait_for(email, 1, timeout=20)) == 1


def test_dead_letters_are_the_operators_to_handle(stack, trusted):
    """The dlq command reads both services' dead-letter queues: the operator account can, a service's cannot."""
    routes = trusted.routes
    poison = Outgoing(type="trust.probe", body={"probe": "dead"}, message_id=f"poison-{uuid.uuid4().hex}")
    assert attempt_publish(trusted, "worker", TO_AUTH_EXCHANGE, routes.account_confirmed, poison) == DELIVERED

    def dlq(role: str, *args: str) -> subprocess.CompletedProcess:
        return dlq_command({**stack.env, "RABBITMQ_URL": trusted.url(role)}, *args)

    deadline = time.monotonic() + 10
    while poison.message_id not in (listed := dlq("admin", "list")).stdout:
        assert listed.returncode == 0, listed.stderr
        assert time.monotonic() < deadline, f"auth did not dead-letter the probe: {listed.stdout}"
        time.sleep(0.3)
    refused = dlq("worker", "list")
    assert refused.returncode == 1 and "ACCESS_REFUSED" in refused.stdout and "operator account" in refused.stdout
    purged = dlq("admin", "purge", "--all")
    assert purged.returncode == 0 and f"purged {poison.message_id}" in purged.stdout


def test_the_definitions_file_is_what_the_broker_loaded(trusted, tmp_path):
    exported = tmp_path / "exported.json"
    trusted.broker.ctl("export_definitions", str(exported))
    loaded = json.loads(Path(exported).read_text())
    permissions = {entry["user"]: entry for entry in loaded["permissions"]}
    assert permissions["trust-admin"]["write"] == ".*"
    assert permissions["trust-auth"]["write"] != ".*" and permissions["trust-worker"]["write"] != ".*"
    [topic] = loaded["topic_permissions"]
    assert (topic["user"], topic["exchange"]) == ("trust-auth", trusted.routes.events_exchange)
