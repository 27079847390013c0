"""The system spread over the private cluster, and a client that drives it like the app would.

``ClusterStack`` runs two auth replicas behind the balancer and two workers on the cluster of
devtools/cluster.py. Its ``call`` is a client's: a refused or reset connection (a replica just
killed) and a 503 are asked again after ``Retry-After``; every answer is counted, and the time from
a request's first try to its final answer is what "the longest wait" reports.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from devtools.cluster import (
    MASTER_NAME,
    RabbitCluster,
    RedisSentinelGroup,
    RoundRobinBalancer,
    start_rabbit_cluster,
    start_redis_sentinel_group,
)
from devtools.mailsink import MailSink, free_port
from devtools.mongo_wire import MongoWireServer
from devtools.stack import LocalStack, Service, delete_queues, http_json, unique_names
from tests.faults.harness import PASSWORD, FaultRun, retry_delays

# Asked again for at most this long: a client gives up after that.
CLIENT_PATIENCE_SECONDS = 60.0
READY_SECONDS = 60.0
REGISTRATIONS = 300
CLIENTS = 8


@dataclass
class Answers:
    """Every answer the client got in one row: statuses of each try and the longest wait."""

    statuses: Counter = field(default_factory=Counter)
    longest_wait: float = 0.0
    unbounded_503: int = 0
    no_answer: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, headers: dict[str, str]) -> None:
        with self._lock:
            self.statuses[status] += 1
            if status == 503 and not headers.get("Retry-After"):
                self.unbounded_503 += 1

    def cut(self, error: OSError) -> None:
        with self._lock:
            self.no_answer[f"{type(error).__name__}: {getattr(error, 'reason', '')}"[:80]] += 1

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.longest_wait = max(self.longest_wait, seconds)

    @property
    def server_errors_other_than_503(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500 and status != 503)


class ClusterStack:
    def __init__(self, base: Path):
        self.base = base
        self.logs = base / "logs"
        self.logs.mkdir(parents=True)
        self.names = unique_names("cluster")
        self.sink = MailSink()
        self.answers = Answers()
        self.rabbit: RabbitCluster | None = None
        self.redis: RedisSentinelGroup | None = None
        self.mongo = MongoWireServer(free_port())
        self.auth_ports = [free_port(), free_port()]
        self.balancer = RoundRobinBalancer(self.auth_ports)
        self.env: dict[str, str] = {}
        self.auths: list[Service] = []
        self.workers: list[Service] = []
        self.worker_ports: list[int] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.balancer.port}"

    def start(self) -> ClusterStack:
        self.rabbit = start_rabbit_cluster(self.base / "rabbit")
        self.redis = start_redis_sentinel_group(self.base / "redis")
        self.mongo.start()
        self.sink.start()
        self.balancer.start()
        self.env = {
            **os.environ,
            **self.names,
            "APP_ENV": "development",
            "MONGO_URI": self.mongo.uri,
            "RABBITMQ_URL": self.rabbit.url,
            "QUORUM_INITIAL_GROUP_SIZE": "3",
            "REDIS_SENTINELS": self.redis.sentinel_addresses,
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "RATELIMIT_ENABLED": "false",
            "BCRYPT_ROUNDS": "4",
            "CODE_HMAC_KEY": "cluster-test-code-key-0123456789abcdef0123",
            "RETRY_DELAYS_SECONDS": "1,3,8,20",
            "MAX_CODES_PER_HOUR": "50",
            "MAX_CODES_PER_DAY": "50",
            "AUTH_HOST": "127.0.0.1",
            # Each replica's admin listener on a port the system picks: replicas never contend for ADMIN_PORT.
            "ADMIN_PORT": "0",
            "WORKER_METRICS_HOST": "127.0.0.1",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.sink.port),
            "PUBLIC_BASE_URL": self.base_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.worker_ports = [free_port(), free_port()]
        self.workers = [
            Service("email_service", self.env, self.logs / f"worker{index}.log", {"WORKER_METRICS_PORT": str(port)})
            for index, port in enumerate(self.worker_ports)
        ]
        self.auths = [
            Service("auth_service", self.env, self.logs / f"auth{index}.log", {"AUTH_PORT": str(port)})
            for index, port in enumerate(self.auth_ports)
        ]
        for index in range(len(self.workers)):
            self.start_worker(index)
        for index in range(len(self.auths)):
            self.start_auth(index)
        return self

    def start_worker(self, index: int) -> None:
        self.workers[index].start()
        _wait_ready(self.workers[index], f"http://127.0.0.1:{self.worker_ports[index]}/readyz")

    def start_auth(self, index: int) -> None:
        self.auths[index].start()
        _wait_ready(self.auths[index], f"http://127.0.0.1:{self.auth_ports[index]}/readyz")

    def stop(self) -> None:
        for service in [*self.auths, *self.workers]:
            with contextlib.suppress(Exception):
                service.stop()
        for part in (self.balancer, self.sink, self.mongo):
            with contextlib.suppress(Exception):
                part.stop()
        if self.rabbit is not None:
            with contextlib.suppress(Exception):
                delete_queues(self.rabbit.url, self.work_queues, retry_delays(self.env))
            self.rabbit.stop()
        if self.redis is not None:
            self.redis.stop()

    @property
    def work_queues(self) -> list[str]:
        return [self.names[name] for name in ("ACCOUNT_CREATION_QUEUE", "CONFIRM_EMAIL_CODE_QUEUE")] + [
            self.names["ACCOUNT_CONFIRMED_QUEUE"]
        ]

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        """As a client: a failed connection or a 503 is asked again (after Retry-After), within patience."""
        started = time.monotonic()
        while True:
            try:
                status, answer_headers, answer = http_json(method, f"{self.base_url}{path}", body, headers, timeout=30)
            except OSError as error:
                self.answers.cut(error)
                status, answer_headers, answer = 0, {}, None
            self.answers.record(status, answer_headers)
            elapsed = time.monotonic() - started
            if status not in (0, 503) or elapsed > CLIENT_PATIENCE_SECONDS:
                self.answers.waited(elapsed)
                return status, answer_headers, answer
            retry_after = float(answer_headers.get("Retry-After", "0.5") or 0.5)
            time.sleep(min(retry_after, 2.0))

    def log_tails(self, characters: int = 2000) -> str:
        return "\n".join(
            f"--- {service.log_path.name} (end)\n{service.log_text()[-characters:]}"
            for service in [*self.workers, *self.auths]
        )


class ClusterRun(FaultRun):
    """One fault row: registrations driven through the balancer, judged as in tests/faults."""

    def __init__(self, stack: ClusterStack):
        assert stack.rabbit is not None
        # FaultRun needs only call, sink and env of its stack, which ClusterStack has.
        super().__init__(cast(LocalStack, stack), stack.rabbit.url, stack.names)
        self.cluster = stack
        stack.answers = Answers()

    def register_burst(self, count: int = REGISTRATIONS, clients: int = CLIENTS) -> list[str]:
        """``count`` registrations in flight from ``clients`` clients; the addresses answered 201."""
        addresses = [f"cluster-{os.urandom(6).hex()}@example.com" for _ in range(count)]

        def one(address: str) -> int:
            status, _, _ = self.stack.call("POST", "/auth/register", {"email": address, "password": PASSWORD})
            return status

        with ThreadPoolExecutor(clients) as pool:
            statuses = list(pool.map(one, addresses))
        created = [address for address, status in zip(addresses, statuses) if status == 201]
        self.refused.update(status for status in statuses if status != 201)
        self.registered.extend(created)
        return created

    def in_background(self, count: int = REGISTRATIONS) -> tuple[threading.Thread, list[list[str]]]:
        result: list[list[str]] = []
        thread = threading.Thread(target=lambda: result.append(self.register_burst(count)), daemon=True)
        thread.start()
        return thread, result

    def mailed_so_far(self) -> int:
        return len(self.stack.sink.all())

    def wait_mailed(self, at_least: int, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while self.mailed_so_far() < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.mailed_so_far()

    def figures(self, fault: str, driven: int, created: list[str]) -> dict:
        outcome = self.judge(created, recover_expired=True)
        answers = self.cluster.answers
        return {
            "fault": fault,
            "driven": driven,
            "201": len(created),
            "mailed": sum(1 for address in created if self.stack.sink.mails_to(address)),
            "confirmed": len(outcome.delivered),
            "lost": len(outcome.lost),
            "duplicated": len(outcome.duplicated),
            "resent": len(outcome.resent),
            "dead_lettered": sum(self.dead_letters().values()),
            "503": answers.statuses.get(503, 0),
            "other_5xx": answers.server_errors_other_than_503,
            "cut_connections": answers.statuses.get(0, 0),
            "cut_by": dict(answers.no_answer),
            "longest_wait_s": round(answers.longest_wait, 2),
            "seconds": round(self.elapsed, 1),
        }

    def log_tails(self, characters: int = 2000) -> str:
        return self.cluster.log_tails(characters)


def _wait_ready(service: Service, url: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    last = None
    while True:
        exited = service.exit_code()
        if exited is not None:
            raise RuntimeError(f"{service.module} exited ({exited}):\n{service.log_text()[-3000:]}")
        with contextlib.suppress(OSError):
            last = http_json("GET", url, timeout=2)
            if last[0] == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.module} not ready after {READY_SECONDS}s: {last}")
        time.sleep(0.2)
