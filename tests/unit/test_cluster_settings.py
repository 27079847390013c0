"""Past one machine: several broker nodes, Redis through Sentinel, replicas that share one store."""

from __future__ import annotations

import threading
from collections import Counter

import fakeredis
import pytest
from redis.sentinel import SentinelConnectionPool

from auth_service.config import Settings as AuthSettings
from auth_service.service_layer.outbox import OUTBOX_GRACE, Outbox
from common.messaging import topology
from common.messaging.connection import parameters
from common.redis_client import redis_from_uri
from common.settings import SettingsError
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.config import Settings as WorkerSettings
from email_service.domain.codes import PendingCode, Purpose, Slot
from email_service.entrypoints import worker as worker_entrypoint
from email_service.ports import IssueStart
from tests.unit.conftest import BASE_ENV

NODES = "amqp://u:p@10.0.0.1:5672/%2F, amqp://u:p@10.0.0.2:5673/%2F,amqp://u:p@10.0.0.3:5674/%2F"


def test_rabbitmq_url_may_list_the_nodes_of_a_cluster_each_tried_in_turn():
    nodes = parameters(NODES, "test")
    assert [(node.host, node.port) for node in nodes] == [("10.0.0.1", 5672), ("10.0.0.2", 5673), ("10.0.0.3", 5674)]
    assert all(node.connection_attempts == 1 and node.heartbeat for node in nodes)
    assert [node.host for node in parameters("amqp://guest:guest@127.0.0.1:5672/%2F", "test")] == ["127.0.0.1"]


def test_quorum_queues_on_a_cluster_spread_their_leaders_and_take_the_group_size_setting():
    single = WorkerSettings.from_env(BASE_ENV)
    # One node: the arguments of the queues that exist today, so a redeclaration stays equivalent.
    assert single.topology.work_queue("Q").replication.arguments() == {"x-queue-type": "quorum"}
    cluster = WorkerSettings.from_env({**BASE_ENV, "RABBITMQ_URL": NODES, "QUORUM_INITIAL_GROUP_SIZE": "3"})
    assert cluster.topology.work_queue("Q").replication.arguments() == {
        "x-queue-type": "quorum",
        "x-quorum-initial-group-size": 3,
        "x-queue-leader-locator": "balanced",
    }
    chosen = WorkerSettings.from_env({**BASE_ENV, "RABBITMQ_URL": NODES, "QUORUM_LEADER_LOCATOR": "client-local"})
    assert chosen.replication == topology.Replication(0, "client-local")
    with pytest.raises(SettingsError, match="QUORUM_LEADER_LOCATOR"):
        WorkerSettings.from_env({**BASE_ENV, "QUORUM_LEADER_LOCATOR": "random"})


def test_every_queue_of_an_inbox_is_declared_with_the_replication_arguments():
    declared: dict[str, dict] = {}

    class Channel:
        def queue_declare(self, queue, durable, arguments):
            declared[queue] = arguments

        def queue_bind(self, *args, **kwargs):
            pass

    replicated = topology.Topology("A", "B", "C", (1, 2), topology.Replication(3, "balanced"))
    inbox = replicated.worker
    for queue in inbox.queues:
        topology.declare_queue(Channel(), inbox, queue)
    assert len(declared) == 2 * 4
    for arguments in declared.values():
        assert arguments["x-quorum-initial-group-size"] == 3
        assert arguments["x-queue-leader-locator"] == "balanced"


def test_sentinels_replace_redis_url_for_the_worker_and_the_rate_limits():
    env = {**BASE_ENV, "RATELIMIT_STORAGE_URI": "", "REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26380"}
    with pytest.raises(SettingsError, match="REDIS_SENTINEL_MASTER"):
        WorkerSettings.from_env(env)
    env["REDIS_SENTINEL_MASTER"] = "codes"
    uri = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/codes"
    worker = WorkerSettings.from_env(env)
    assert worker.redis_uri == uri
    assert worker.redis_wait_replicas == 1  # a replica acknowledges a code before it is mailed
    assert AuthSettings.from_env(env).ratelimit_storage_uri == uri
    plain = WorkerSettings.from_env(BASE_ENV)
    assert plain.redis_uri == plain.redis_url
    assert plain.redis_wait_replicas == 0
    with pytest.raises(SettingsError, match="host:port"):
        WorkerSettings.from_env({**env, "REDIS_SENTINELS": "10.0.0.1"})


def test_a_sentinel_uri_gives_a_client_of_the_master_the_sentinels_name():
    client = redis_from_uri("redis+sentinel://:secret@10.0.0.1:26379,10.0.0.2:26380/codes", socket_timeout=1.5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "codes"
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in pool.sentinel_manager.sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]  # fmt: skip
    assert pool.connection_kwargs["password"] == "secret"
    assert pool.connection_kwargs["socket_timeout"] == 1.5
    with pytest.raises(ValueError, match="master"):
        redis_from_uri("redis+sentinel://10.0.0.1:26379")


class _Replicated(fakeredis.FakeRedis):
    """fakeredis without replicas: WAIT answers how many replicas the test says acknowledged."""

    acknowledging = 1
    waits: list[tuple[int, int]] = []

    def wait(self, num_replicas, timeout, **kwargs):
        self.waits.append((num_replicas, timeout))
        return self.acknowledging


def _pending(sequence: int) -> PendingCode:
    return PendingCode(
        slot=Slot(Purpose.VERIFY_EMAIL, "a@example.com"),
        user_id="u1",
        code_digest="digest",
        attempts=0,
        message_id=f"m{sequence}",
        requested_at=1.0,
        mail_sent=False,
        sequence=sequence,
    )


def _store_code(store: RedisPendingCodes, sequence: int) -> IssueStart:
    """Start and finish issuing a request's code, as the worker does around its mail."""
    pending = _pending(sequence)
    started = store.start_issue(
        pending,
        pending.message_id,
        ttl_seconds=60,
        now=1000.0,
        per_hour=100,
        per_day=100,
        hold_seconds=5,
        wait_seconds=0,
    )
    store.finish_issue(pending.slot, pending.message_id, pending.message_id, sent=False)
    return started


def test_a_stored_code_waits_for_a_replica_before_it_is_mailed(caplog):
    client = _Replicated()
    client.waits = []
    store = RedisPendingCodes(client, "t", replicas=1, replica_timeout_ms=250)
    assert _store_code(store, 2) is IssueStart.STORED
    assert client.waits == [(1, 250)]
    assert _store_code(store, 1) is IssueStart.OUTDATED  # an older request stores nothing: nothing to wait for
    assert client.waits == [(1, 250)]
    client.acknowledging = 0
    assert _store_code(store, 3) is IssueStart.STORED
    assert "fewer Redis replicas than asked" in caplog.text
    unreplicated = _Replicated()
    unreplicated.waits = []
    _store_code(RedisPendingCodes(unreplicated, "t"), 1)
    assert unreplicated.waits == []  # one Redis: no WAIT, which would only time out


def test_relays_of_two_replicas_publish_each_stored_message_once(system, unique_email):
    system.broker.up = False
    addresses = [unique_email() for _ in range(30)]
    for address in addresses:
        response = system.client.post("/auth/register", json={"email": address, "password": "correct horse battery"})
        assert response.status_code == 201
    system.broker.up = True
    system.clock.advance(OUTBOX_GRACE.total_seconds() + 1)
    # A second auth process: its own relay over the same users' store.
    replicas = [system.auth.outbox, Outbox(system.auth.users, system.broker, 3.0, system.clock)]
    start = threading.Barrier(len(replicas))

    def relay(outbox: Outbox) -> None:
        start.wait()
        outbox.relay_due()

    threads = [threading.Thread(target=relay, args=(outbox,)) for outbox in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    published = Counter(delivery.message.message_id for delivery in system.broker.deliveries)
    assert len(published) == 2 * len(addresses)  # each registration's code request and user.registered event
    assert set(published.values()) == {1}


def test_a_second_worker_on_a_taken_metrics_port_exits_with_one_line_naming_the_setting(monkeypatch, caplog):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = WorkerSettings.from_env({**BASE_ENV, "WORKER_METRICS_PORT": str(port)})
        monkeypatch.setattr(worker_entrypoint.bootstrap, "build_worker", lambda settings: _NoWorker())
        assert worker_entrypoint.run(settings) == 1
    [line] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert f"WORKER_METRICS_PORT={port}" in line
    assert "\n" not in line


class _NoWorker:
    consumers: list = []
    registry = None

    @staticmethod
    def readiness() -> dict[str, str]:
        return {}
