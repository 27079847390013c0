"""``make bench-scale``: how the worker and auth scale out, on one broker node and on a cluster.

Two measurements, each on the machine's single RabbitMQ and Redis, then on a private cluster
(three RabbitMQ nodes, quorum queues over all three, Redis with a replica and Sentinel) that this
command starts on free ports and removes again:

1. worker throughput: ``--messages`` account-creation messages are queued first, then 1, 2 and 4
   worker processes (default threads each) drain them into a counting SMTP sink; mails per second
   from the first mail to the last;
2. auth register throughput: 1 and 2 ``python -m auth_service`` replicas behind a round-robin
   balancer, on one store (devtools/mongo_wire.py: there is no MongoDB server here), take
   ``--registrations`` registrations from 8 clients; registrations per second.

Every queue and Redis key a run makes is removed at its end. Prints one markdown table
(docs/scaling.md explains it).

    make bench-scale
    python -m bench.scale --messages 400 --registrations 100 --skip-cluster
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pika

from bench import local_servers
from bench import sink as smtp_sink
from bench.workload import code_request, wait_for_depth
from common.messaging import topology
from common.messaging.connection import node_urls, parameters
from common.messaging.consumer import publish
from common.redis_client import redis_from_uri
from devtools.cluster import MASTER_NAME, RoundRobinBalancer, start_rabbit_cluster, start_redis_sentinel_group
from devtools.mailsink import free_port
from devtools.mongo_wire import MongoWireServer
from devtools.stack import Service, delete_queues, http_json, unique_names

WORKER_COUNTS = (1, 2, 4)
AUTH_REPLICAS = (1, 2)
CLIENTS = 8
PASSWORD = "correct horse battery staple"  # noqa: S105 (a test account's)


@dataclass(frozen=True)
class Backend:
    """Where a run's services find their servers: the environment they are given."""

    label: str
    env: dict[str, str]

    @property
    def rabbitmq_url(self) -> str:
        return self.env["RABBITMQ_URL"]

    @property
    def redis_uri(self) -> str:
        sentinels = self.env.get("REDIS_SENTINELS")
        return f"redis+sentinel://{sentinels}/{MASTER_NAME}" if sentinels else self.env["REDIS_URL"]


@dataclass(frozen=True)
class Row:
    backend: str
    measure: str
    processes: int
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def progress(message: str) -> None:
    print(f"[bench-scale] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1200, help="messages queued for each worker run")
    parser.add_argument("--registrations", type=int, default=160, help="registrations for each auth run")
    parser.add_argument("--bcrypt-rounds", type=int, default=10, help="auth's BCRYPT_ROUNDS in the auth runs")
    parser.add_argument("--skip-cluster", action="store_true", help="measure on the single node only")
    args = parser.parse_args(argv)
    servers = local_servers()
    if servers is None:
        return 1
    rabbitmq_url, redis_url = servers
    rows: list[Row] = []
    single = Backend("single node", {"RABBITMQ_URL": rabbitmq_url, "REDIS_URL": redis_url})
    rows += measure(single, args)
    if not args.skip_cluster:
        with private_cluster() as cluster:
            rows += measure(cluster, args)
    print(table(rows, args))
    return 0


def measure(backend: Backend, args: argparse.Namespace) -> list[Row]:
    rows = []
    sink = smtp_sink.CountingSink().start()
    try:
        for workers in WORKER_COUNTS:
            seconds = drain(backend, sink, workers, args.messages)
            rows.append(Row(backend.label, "worker mails/s", workers, args.messages, seconds))
            progress(f"{backend.label}: {workers} worker(s) {rows[-1].rate:.0f} mails/s")
        for replicas in AUTH_REPLICAS:
            seconds = register(backend, sink, replicas, args.registrations, args.bcrypt_rounds)
            rows.append(Row(backend.label, "auth registrations/s", replicas, args.registrations, seconds))
            progress(f"{backend.label}: {replicas} auth replica(s) {rows[-1].rate:.1f} registrations/s")
    finally:
        sink.stop()
    return rows


@contextlib.contextmanager
def private_cluster() -> Iterator[Backend]:
    base = Path(tempfile.mkdtemp(prefix="bench-scale-cluster-"))
    rabbit = redis_group = None
    try:
        progress("starting three RabbitMQ nodes and Redis with Sentinel")
        rabbit = start_rabbit_cluster(base / "rabbit")
        redis_group = start_redis_sentinel_group(base / "redis")
        yield Backend(
            "cluster (3 nodes)",
            {
                "RABBITMQ_URL": rabbit.url,
                "QUORUM_INITIAL_GROUP_SIZE": "3",
                "REDIS_SENTINELS": redis_group.sentinel_addresses,
                "REDIS_SENTINEL_MASTER": MASTER_NAME,
            },
        )
    finally:
        if redis_group is not None:
            redis_group.stop()
        if rabbit is not None:
            rabbit.stop()
        shutil.rmtree(base, ignore_errors=True)


def service_env(backend: Backend, names: dict[str, str], sink: smtp_sink.CountingSink) -> dict[str, str]:
    return {
        **os.environ,
        **backend.env,
        **names,
        **sink.smtp_settings(),
        "APP_ENV": "development",
        "RATELIMIT_ENABLED": "false",
        "CODE_HMAC_KEY": "bench-scale-code-key-0123456789abcdef0123456789",
        "MAX_CODES_PER_HOUR": "50",
        "WORKER_METRICS_PORT": "0",
        "AUTH_HOST": "127.0.0.1",
        # Each replica's admin listener on a port the system picks: replicas never contend for ADMIN_PORT.
        "ADMIN_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }


def routes_of(backend: Backend, names: dict[str, str]) -> topology.Topology:
    """The run's queues declared as its services will declare them (replication included)."""
    from auth_service.config import Settings

    settings = Settings.from_env({**backend.env, **names, "APP_ENV": "development"})
    return settings.topology


@contextlib.contextmanager
def run_queues(backend: Backend, names: dict[str, str]) -> Iterator[topology.Topology]:
    routes = routes_of(backend, names)
    connection = pika.BlockingConnection(parameters(backend.rabbitmq_url, "bench-scale"))
    try:
        topology.declare(connection.channel(), routes.worker)
    finally:
        connection.close()
    try:
        yield routes
    finally:
        delete_queues(backend.rabbitmq_url, routes.work_queues)
        client = redis_from_uri(backend.redis_uri)
        for prefix in (names["REDIS_KEY_PREFIX"], names["RATELIMIT_KEY_PREFIX"]):
            for key in client.scan_iter(match=f"{prefix}:*"):
                client.delete(key)


def drain(backend: Backend, sink: smtp_sink.CountingSink, workers: int, count: int) -> float:
    """Seconds from the first mail to the last of ``count`` pre-queued messages, drained by ``workers``."""
    names = unique_names("bench-scale")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    with run_queues(backend, names) as routes:
        connection = pika.BlockingConnection(parameters(backend.rabbitmq_url, "bench-scale"))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for index in range(count):
                address = f"u{index}.{names['REDIS_KEY_PREFIX']}@example.com"
                publish(channel, routes, routes.account_creation, code_request(address, None))
        finally:
            connection.close()
        wait_for_depth(node_urls(backend.rabbitmq_url)[0], routes.account_creation, count)
        start = sink.count
        env = service_env(backend, names, sink)
        services = [Service("email_service", env, log_dir / f"worker{index}.log") for index in range(workers)]
        try:
            for service in services:
                service.start()
            while sink.count == start:
                _alive(services)
                time.sleep(0.01)
            first = time.monotonic()
            while sink.count < start + count:
                _alive(services)
                time.sleep(0.01)
            return time.monotonic() - first
        finally:
            for service in services:
                service.stop()
            shutil.rmtree(log_dir, ignore_errors=True)


def register(backend: Backend, sink: smtp_sink.CountingSink, replicas: int, count: int, rounds: int) -> float:
    """Seconds for ``count`` registrations from ``CLIENTS`` clients through ``replicas`` auth processes."""
    names = unique_names("bench-scale")
    tag = os.urandom(5).hex()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    store = MongoWireServer(free_port()).start()
    ports = [free_port() for _ in range(replicas)]
    balancer = RoundRobinBalancer(ports).start()
    env = {**service_env(backend, names, sink), "MONGO_URI": store.uri, "BCRYPT_ROUNDS": str(rounds)}
    services = [
        Service("auth_service", env, log_dir / f"auth{index}.log", {"AUTH_PORT": str(port)})
        for index, port in enumerate(ports)
    ]
    try:
        with run_queues(backend, names):
            for service, port in zip(services, ports):
                service.start()
                _wait_ready(service, f"http://127.0.0.1:{port}/readyz")
            url = f"http://127.0.0.1:{balancer.port}/auth/register"

            def one(index: int) -> int:
                body = {"email": f"r{index}.{tag}@example.com", "password": PASSWORD}
                return http_json("POST", url, body)[0]

            started = time.monotonic()
            with ThreadPoolExecutor(CLIENTS) as pool:
                statuses = list(pool.map(one, range(count)))
            seconds = time.monotonic() - started
            if statuses.count(201) != count:
                raise RuntimeError(f"not every registration was answered 201: {sorted(set(statuses))}")
            return seconds
    finally:
        for service in services:
            service.stop()
        balancer.stop()
        store.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


def _alive(services: list[Service]) -> None:
    for service in services:
        if service.exit_code() is not None:
            raise RuntimeError(f"{service.module} exited:\n{service.log_text()[-2000:]}")


def _wait_ready(service: Service, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        _alive([service])
        with contextlib.suppress(OSError):
            if http_json("GET", url, timeout=2)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.module} not ready:\n{service.log_text()[-2000:]}")
        time.sleep(0.2)


def table(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"Scale run on {platform.node()} ({os.cpu_count()} cores), {args.messages} messages per worker run, "
        f"{args.registrations} registrations per auth run at BCRYPT_ROUNDS={args.bcrypt_rounds}",
        "",
        "| backend | measure | processes | rate | vs 1 process |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        base = next(r for r in rows if r.backend == row.backend and r.measure == row.measure and r.processes == 1)
        lines.append(
            f"| {row.backend} | {row.measure} | {row.processes} | {row.rate:.1f} | {row.rate / base.rate:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
