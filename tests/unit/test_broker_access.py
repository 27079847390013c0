"""Broker trust, without a broker: the routes each message kind takes, the accounts, the definitions.

The permissions themselves are proven on a real RabbitMQ node in
tests/faults/test_broker_trust.py; the stack's wiring in test_stack_files.py.
"""

from __future__ import annotations

import base64
import json
import re
import stat

import pytest

from common.messaging import access, topology
from common.messaging.consumer import ChannelPublisher
from common.messaging.envelope import Outgoing
from common.settings import SettingsError

ROUTES = topology.Topology("reg.q", "code.q", "confirmed.q", (2, 10))
ACCOUNTS_ENV = {
    "RABBITMQ_ADMIN_PASSWORD": "admin-password-0123456789",
    "RABBITMQ_AUTH_PASSWORD": "auth-password-0123456789",
    "RABBITMQ_WORKER_PASSWORD": "worker-password-0123456789",
}


class RecordingChannel:
    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_messages_for_the_other_service_go_through_its_inbox_exchange_never_the_default_one():
    channel = RecordingChannel()
    publisher = ChannelPublisher(channel, ROUTES)
    publisher.publish("confirmed.q", Outgoing(type="account.confirmed", body={}))
    publisher.reply("verification.replies.abc", Outgoing(type="email_code.verdict", body={}))
    [(_, _, confirmation), (_, _, verdict)] = channel.calls
    assert (confirmation["exchange"], confirmation["routing_key"]) == (topology.TO_AUTH_EXCHANGE, "confirmed.q")
    assert (verdict["exchange"], verdict["routing_key"]) == (topology.REPLIES_EXCHANGE, "verification.replies.abc")
    assert ROUTES.inbox_of("reg.q").exchange == ROUTES.inbox_of("code.q").exchange == topology.TO_WORKER_EXCHANGE
    with pytest.raises(KeyError):
        ROUTES.inbox_of("somebody.else")


def test_replies_go_on_the_reply_channel_and_everything_else_on_the_confirmed_one():
    confirmed, replies = RecordingChannel(), RecordingChannel()
    publisher = ChannelPublisher(confirmed, ROUTES, reply_channel=replies)
    publisher.publish("confirmed.q", Outgoing(type="account.confirmed", body={}))
    publisher.reply("verification.replies.abc", Outgoing(type="email_code.verdict", body={}))
    assert [kwargs["routing_key"] for _, _, kwargs in confirmed.calls] == ["confirmed.q"]
    assert [kwargs["routing_key"] for _, _, kwargs in replies.calls] == ["verification.replies.abc"]


def test_a_service_declares_the_exchanges_and_only_the_queues_it_consumes():
    channel = RecordingChannel()
    topology.declare(channel, ROUTES.worker)
    exchanges = [args[0] for name, args, _ in channel.calls if name == "exchange_declare"]
    assert exchanges == [*topology.SHARED_EXCHANGES, topology.WORKER_RETRIES_EXCHANGE, topology.DEFAULT_EVENTS_EXCHANGE]
    declared = {kwargs["queue"]: kwargs["arguments"] for name, _, kwargs in channel.calls if name == "queue_declare"}
    assert set(declared) == {
        f"{queue}{suffix}" for queue in ("reg.q", "code.q") for suffix in ("", ".dead", ".retry.2s", ".retry.10s")
    }
    # Dead-lettering and the way back from a retry queue go through the worker's own exchange.
    assert {arguments.get("x-dead-letter-exchange") for arguments in declared.values()} == {
        None,
        topology.WORKER_RETRIES_EXCHANGE,
    }
    assert declared["reg.q.retry.10s"]["x-dead-letter-routing-key"] == "reg.q"
    assert declared["reg.q"]["x-dead-letter-routing-key"] == "reg.q.dead"
    bindings = {args for name, args, _ in channel.calls if name == "queue_bind"}
    assert ("reg.q", topology.TO_WORKER_EXCHANGE) in {(queue, exchange) for queue, exchange in bindings}
    assert all(exchange != topology.TO_AUTH_EXCHANGE for _, exchange in bindings)


def test_events_go_to_the_topic_exchange_and_the_notification_queue_is_bound_to_the_mailed_ones():
    routes = topology.Topology(
        "reg.q", "code.q", "confirmed.q", (2, 10), account_notifications="notices.q", events_exchange="events.x"
    )
    channel = RecordingChannel()
    publisher = ChannelPublisher(channel, routes)
    publisher.publish("user.verified", Outgoing(type="user.verified", body={}))
    publisher.publish("confirmed.q.delayed", Outgoing(type="lock.due", body={}, expiration_ms=5000))
    [(_, _, event), (_, _, due)] = channel.calls
    # An event nobody bound is dropped by the exchange (publish-subscribe), never an error.
    assert (event["exchange"], event["routing_key"], event["mandatory"]) == ("events.x", "user.verified", False)
    assert (due["exchange"], due["routing_key"], due["mandatory"]) == (
        topology.AUTH_RETRIES_EXCHANGE,
        "confirmed.q.delayed",
        True,
    )
    assert due["properties"].expiration == "5000"

    channel = RecordingChannel()
    topology.declare(channel, routes.worker)
    assert tuple(
        args[0]
        for name, args, kwargs in channel.calls
        if name == "exchange_declare" and kwargs["exchange_type"] == "topic"
    ) == ("events.x",)
    bound = {
        args[2] if len(args) > 2 else kwargs["routing_key"]
        for name, args, kwargs in channel.calls
        if name == "queue_bind" and args[:2] == ("notices.q", "events.x")
    }
    assert bound == set(topology.MAILED_EVENTS)

    channel = RecordingChannel()
    topology.declare(channel, routes.auth)
    declared = {kwargs["queue"]: kwargs["arguments"] for name, _, kwargs in channel.calls if name == "queue_declare"}
    # The delay queue has no TTL of its own and leads back to auth's queue.
    assert "x-message-ttl" not in declared["confirmed.q.delayed"]
    assert declared["confirmed.q.delayed"]["x-dead-letter-routing-key"] == "confirmed.q"
    permissions = access.service_permissions(routes, "events.x")
    assert re.fullmatch(permissions["auth"].configure, "confirmed.q.delayed")
    assert not re.fullmatch(permissions["worker"].configure, "confirmed.q.delayed")
    assert re.fullmatch(permissions["worker"].read, "events.x") and re.fullmatch(
        permissions["worker"].read, "notices.q"
    )
    # Auth binds a queue of its own to the events exchange (session ends), and reads nobody else's.
    own = f"{topology.SESSION_ENDS_QUEUE_PREFIX}{'a' * 32}"
    assert re.fullmatch(permissions["auth"].read, "events.x") and re.fullmatch(permissions["auth"].read, own)
    assert re.fullmatch(permissions["auth"].configure, own) and re.fullmatch(permissions["auth"].write, own)
    assert not re.fullmatch(permissions["auth"].read, "notices.q")
    assert not re.fullmatch(permissions["auth"].configure, topology.SESSION_ENDS_QUEUE_PREFIX + "x")


def test_password_hashes_are_rabbitmqs_salted_sha256():
    # Exported by RabbitMQ 3.10 for the password "pw1".
    exported = "HkeHhG2lGB0UesaWDINfwvVcNTofph8VVQF0nBtwaW1AamRw"
    assert access.password_hash("pw1", base64.b64decode(exported)[:4]) == exported


def test_broker_accounts_need_long_url_safe_passwords_and_three_names():
    accounts = access.BrokerSettings.from_env(ACCOUNTS_ENV).accounts
    assert [account.user for account in accounts.by_role().values()] == ["admin", "auth-service", "email-worker"]
    assert not any(password in repr(accounts) for password in ACCOUNTS_ENV.values())
    for name in ACCOUNTS_ENV:
        with pytest.raises(SettingsError, match=name):
            access.BrokerSettings.from_env({**ACCOUNTS_ENV, name: ""})
        with pytest.raises(SettingsError, match=name):
            access.BrokerSettings.from_env({**ACCOUNTS_ENV, name: "short"})
        with pytest.raises(SettingsError, match=name):
            access.BrokerSettings.from_env({**ACCOUNTS_ENV, name: "not/url@safe-0123456789"})
    with pytest.raises(SettingsError, match="must differ"):
        access.BrokerSettings.from_env({**ACCOUNTS_ENV, "RABBITMQ_WORKER_USER": "auth-service"})


def test_queue_names_are_matched_literally_in_the_permissions():
    literal = topology.Topology("acme.reg+1", "acme.code", "acme.done")
    read = access.service_permissions(literal)["worker"].read
    assert re.fullmatch(read, "acme.reg+1") and re.fullmatch(read, "acme.reg+1.retry.30s")
    assert not re.fullmatch(read, "acmeXreg+1") and not re.fullmatch(read, "acme.regg1")


def test_render_writes_hashes_never_passwords(tmp_path):
    path = tmp_path / "broker" / "definitions.json"
    accounts = access.render(path, {**ACCOUNTS_ENV, "ACCOUNT_CONFIRMED_QUEUE": "done.q"})
    text = path.read_text()
    assert all(account.password not in text for account in accounts.by_role().values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the broker reads it as its own user
    document = json.loads(text)
    assert {user["name"] for user in document["users"]} == {"admin", "auth-service", "email-worker"}
    [auth] = [entry for entry in document["permissions"] if entry["user"] == "auth-service"]
    assert re.fullmatch(auth["read"], "done.q")  # the queue name from the settings
    assert list(tmp_path.joinpath("broker").iterdir()) == [path], "no temporary file left behind"


def test_the_renderer_refuses_to_start_without_the_passwords(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ACCOUNTS_ENV:
        monkeypatch.delenv(name, raising=False)
    assert access.main([str(tmp_path / "definitions.json")]) == 2
    assert "RABBITMQ_ADMIN_PASSWORD: is required" in capsys.readouterr().err
    assert not (tmp_path / "definitions.json").exists()
