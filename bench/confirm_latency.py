"""What a /auth/confirm costs beyond its round trips: one repetition of the measurement.

The real auth service and email worker run as processes (devtools.stack.LocalStack,
with its in-process mail sink, which only works before the measurement while
users register). Each pre-registered user then submits a few wrong codes and
the right one, read from the sink, one request at a time on a kept HTTP
connection; after each confirm the same connection asks /healthz (the cost of
an HTTP round trip through waitress and Flask) and a raw RPC goes over the
direct reply-to pseudo-queue to an echo server on a quorum queue (the cost of
the broker round trip). Each of the three is timed alone, interleaved, so
that noise on the shared machine falls on all three alike.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pika

from bench.processes import peak_rss_bytes, process_tree
from bench.rpc_echo import RawRpcClient
from bench.stats import LatencyRun
from bench.workload import RUN_PREFIX, Leftovers
from devtools.stack import LocalStack, Service, unique_names

log = logging.getLogger("bench")

PASSWORD = "correct horse battery staple"  # noqa: S105 (benchmark accounts)
WARM_UP_REQUESTS = 20
AUTH_MODULE = "bench.indexed_mongo"
# Printed under the confirm table: the stand-in is the benchmark's modeling choice, not the product's.
MONGO_STAND_IN = (
    "auth on mongomock with complete single-field indexes (by _id, by value, by range), as MongoDB answers, "
    "and TTL expiry at most once a second (bench/indexed_mongo.py), not scanning every account"
)


@dataclass(frozen=True)
class ConfirmOutcome:
    run: LatencyRun
    auth_peak_rss_bytes: int
    worker_peak_rss_bytes: int


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


class KeptConnection:
    """One HTTP/1.1 connection reused for every request, so no sample pays a TCP handshake."""

    def __init__(self, port: int):
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def timed(self, method: str, path: str, body: dict | None = None) -> tuple[int, float]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        started = time.perf_counter()
        self._connection.request(method, path, body=payload, headers=headers)
        response = self._connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started

    def close(self) -> None:
        self._connection.close()


def register(stack: LocalStack, email: str) -> str:
    status, _, body = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    if status != 201:
        raise RuntimeError(f"registration answered {status}: {body}")
    mails = stack.sink.wait_for(email, timeout=30)
    if not mails or mails[-1].code is None:
        raise RuntimeError(f"no code mailed to {email}")
    return mails[-1].code


def measure_confirm(
    settings: dict[str, str], users: int, wrong_codes: int, log_dir: Path, leftovers: list[Leftovers]
) -> ConfirmOutcome:
    """One repetition on a fresh stack; ``settings`` are the services' own (LocalStack adds the environment)."""
    rabbitmq_url, redis_url = settings["RABBITMQ_URL"], settings["REDIS_URL"]
    names = unique_names(RUN_PREFIX)
    rpc_queue = names["ACCOUNT_CREATION_QUEUE"].replace("account_creation", "rpc")
    mine = Leftovers(rabbitmq_url, redis_url, plain_queues=[rpc_queue])
    mine.add_names(names)
    leftovers.append(mine)
    overrides = {
        **settings,
        **names,
        "RATELIMIT_ENABLED": "false",
        "BCRYPT_ROUNDS": "4",  # registrations are set-up here, not measured
    }
    stack = echo = http_connection = rpc = None
    try:
        _declare_quorum_queue(rabbitmq_url, rpc_queue)
        stack = start_stack(log_dir, overrides)
        echo = Service("bench.rpc_echo", {**stack.env, "BENCH_QUEUE": rpc_queue}, log_dir / "rpc_echo.log").start()
        tag = uuid.uuid4().hex[:8]
        emails = [f"confirm{index}.{tag}@example.com" for index in range(users)]
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda email: register(stack, email), emails))

        http_connection = KeptConnection(stack.auth_port)
        rpc = RawRpcClient(rabbitmq_url, rpc_queue)
        request = json.dumps({"type": "bench.rpc_request", "email": emails[0], "code": "000000"}).encode()
        for _ in range(WARM_UP_REQUESTS):
            http_connection.timed("GET", "/healthz")
            rpc.call(request)

        confirm, healthz, round_trips, unexpected = [], [], [], 0
        for email, code in zip(emails, codes):
            for submitted, expected in [(wrong_code(code), 400)] * wrong_codes + [(code, 200)]:
                status, seconds = http_connection.timed("POST", "/auth/confirm", {"email": email, "code": submitted})
                confirm.append(seconds)
                unexpected += status != expected
                healthz.append(http_connection.timed("GET", "/healthz")[1])
                round_trips.append(rpc.call(request))
        return ConfirmOutcome(
            run=LatencyRun(tuple(confirm), tuple(healthz), tuple(round_trips), unexpected),
            auth_peak_rss_bytes=peak_rss_bytes(process_tree(stack.auth.started.pid)),
            worker_peak_rss_bytes=peak_rss_bytes(process_tree(stack.worker.started.pid)),
        )
    finally:
        for client in (rpc, http_connection):
            if client is not None:
                client.close()
        for process in (echo, stack):
            if process is not None:
                process.stop()
        mine.remove()


def start_stack(log_dir: Path, overrides: dict[str, str], attempts: int = 3) -> LocalStack:
    """A started stack; on a shared machine a free port can be taken between choosing and binding it,
    so a stack that does not come up is tried again on new ports."""
    for attempt in range(1, attempts + 1):
        stack = LocalStack(log_dir / f"stack{attempt}", overrides)
        # The auth service as deployed, on an in-memory MongoDB that answers by index (bench/indexed_mongo.py).
        stack.auth.module = AUTH_MODULE
        try:
            return stack.start()  # stops what it started if it fails
        except RuntimeError as error:
            if attempt == attempts:
                raise
            log.warning("the stack did not come up, trying new ports: %s", str(error).splitlines()[0])
    raise AssertionError("unreachable")


def _declare_quorum_queue(rabbitmq_url: str, name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        connection.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        connection.close()
