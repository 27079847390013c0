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
from common.settings import Reader, SettingsError

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


def test_a_service_declares_the_exchanges_and_only_the_queues_it_consumes():
    channel = RecordingChannel()
    topology.declare(channel, ROUTES.worker)
    exchanges = [args[0] for name, args, _ in channel.calls if name == "exchange_declare"]
    assert exchanges == [*topology.SHARED_EXCHANGES, topology.WORKER_RETRIES_EXCHANGE]
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


def test_password_hashes_are_rabbitmqs_salted_sha256():
    # Exported by RabbitMQ 3.10 for the password "pw1".
    exported = "HkeHhG2lGB0UesaWDINfwvVcNTofph8VVQF0nBtwaW1AamRw"
    assert access.password_hash("pw1", base64.b64decode(exported)[:4]) == exported


def test_broker_accounts_need_long_url_safe_passwords_and_three_names():
    accounts = access.BrokerAccounts.read(Reader(ACCOUNTS_ENV))
    assert [account.user for account in accounts.by_role().values()] == ["admin", "auth-service", "email-worker"]
    assert not any(password in repr(accounts) for password in ACCOUNTS_ENV.values())
    for name in ACCOUNTS_ENV:
        with pytest.raises(SettingsError, match=name):
            access.BrokerAccounts.read(Reader({**ACCOUNTS_ENV, name: ""}))
        with pytest.raises(SettingsError, match=name):
            access.BrokerAccounts.read(Reader({**ACCOUNTS_ENV, name: "short"}))
        with pytest.raises(SettingsError, match=name):
            access.BrokerAccounts.read(Reader({**ACCOUNTS_ENV, name: "not/url@safe-0123456789"}))
    with pytest.raises(SettingsError, match="must differ"):
        access.BrokerAccounts.read(Reader({**ACCOUNTS_ENV, "RABBITMQ_WORKER_USER": "auth-service"}))


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
    assert "RABBITMQ_ADMIN_PASSWORD is required" in capsys.readouterr().err
    assert not (tmp_path / "definitions.json").exists()
