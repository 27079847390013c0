"""What a /auth/confirm costs beyond its round trips: one repetition of the measurement.

The real auth service and email worker run as processes (``ProjectStack``),
their mail going to the benchmark's sink in a process of its own
(bench/code_sink.py), which hands the driver the code mails while users
register and only counts mail while confirms are measured: the welcome mail
each verified confirm causes costs the measuring process nothing (read in this
process, as LocalStack's sink reads every mail, each took its GIL for about
6 ms while the next requests were being timed). Each pre-registered user then submits a few wrong codes and
the right one, read from the sink, one request at a time on a kept HTTP
connection; after each confirm the same connection asks /healthz (the cost of
an HTTP round trip through waitress and Flask) and a raw RPC goes over the
direct reply-to pseudo-queue to an echo server on a quorum queue (the cost of
the broker round trip). Each of the three is timed alone, interleaved, so
that noise on the shared machine falls on all three alike.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pika

from bench.code_sink import CodeSink
from bench.processes import peak_rss_bytes, process_tree
from bench.rpc_echo import RawRpcClient
from bench.signup_stats import code_in
from bench.stats import LatencyRun
from bench.workload import RUN_PREFIX, Leftovers
from devtools.stack import LocalStack, Service, unique_names

log = logging.getLogger("bench")

PASSWORD = "correct horse battery staple"  # noqa: S105 (benchmark accounts)
WARM_UP_REQUESTS = 20
REGISTERING_CLIENTS = 8
MAIL_WAIT_SECONDS = 30.0
CODE_PATTERN = re.compile(r"\b\d{6}\b")
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


class ProjectStack(LocalStack):
    """The project's stack as the benchmark runs it: auth on the indexed MongoDB stand-in, and mail to
    the benchmark's sink (a process of its own) rather than to a sink in this process."""

    def __init__(self, log_dir: Path, overrides: dict[str, str], smtp_port: int):
        super().__init__(log_dir, overrides)
        # The auth service as deployed, on an in-memory MongoDB that answers by index (bench/indexed_mongo.py).
        self.auth.module = AUTH_MODULE
        self.smtp_port = smtp_port

    def start(self, ready_timeout: float = 60.0, worker: bool = True) -> LocalStack:
        self.env["SMTP_PORT"] = str(self.smtp_port)
        try:
            if worker:
                self.worker.start()
            self.auth.start()
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> dict[str, int | None]:
        return {"auth": self.auth.stop(), "worker": self.worker.stop()}


def register_all(stack: LocalStack, sink: CodeSink, emails: list[str]) -> list[str]:
    """Register every address, and read each one's code from its mail at the sink."""
    sink.keep(True)
    try:
        with ThreadPoolExecutor(REGISTERING_CLIENTS) as pool:
            answers = list(pool.map(lambda email: stack.call("POST", "/auth/register", _registration(email)), emails))
        for email, (status, _, body) in zip(emails, answers):
            if status != 201:
                raise RuntimeError(f"registering {email} answered {status}: {body}")
        codes: dict[str, str] = {}
        awaited = {email.lower() for email in emails}
        deadline = time.monotonic() + MAIL_WAIT_SECONDS
        while awaited - codes.keys() and (left := deadline - time.monotonic()) > 0:
            arrival = sink.next_arrival(left)
            if arrival is None or arrival.recipient not in awaited:
                continue
            if (code := code_in(arrival.raw, CODE_PATTERN)) is not None:
                codes[arrival.recipient] = code
    finally:
        sink.keep(False)  # from here on the sink only counts
    missing = [email for email in emails if email.lower() not in codes]
    if missing:
        raise RuntimeError(f"no code mailed to {len(missing)} of {len(emails)} addresses, {missing[0]} among them")
    return [codes[email.lower()] for email in emails]


def _registration(email: str) -> dict[str, str]:
    return {"email": email, "password": PASSWORD}


@dataclass(frozen=True)
class Rig:
    """A fresh stack with its users registered, the raw RPC's echo consumer, and the two clients, warmed up."""

    stack: LocalStack
    sink: CodeSink
    echo: Service
    http: KeptConnection
    rpc: RawRpcClient
    rpc_request: bytes
    accounts: list[tuple[str, str]]  # (address, the code mailed to it)


@contextlib.contextmanager
def rig(settings: dict[str, str], users: int, log_dir: Path, leftovers: list[Leftovers]) -> Iterator[Rig]:
    """``settings`` are the services' own (LocalStack adds the environment); on the way out every process
    is stopped and what the run created removed (``leftovers`` gets its record)."""
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
    sink = CodeSink().start()
    stack = echo = http_connection = rpc = None
    try:
        declare_quorum_queue(rabbitmq_url, rpc_queue)
        stack = start_stack(log_dir, overrides, sink.port)
        echo = Service("bench.rpc_echo", {**stack.env, "BENCH_QUEUE": rpc_queue}, log_dir / "rpc_echo.log").start()
        tag = uuid.uuid4().hex[:8]
        emails = [f"confirm{index}.{tag}@example.com" for index in range(users)]
        codes = register_all(stack, sink, emails)

        http_connection = KeptConnection(stack.auth_port)
        rpc = RawRpcClient(rabbitmq_url, rpc_queue)
        request = json.dumps({"type": "bench.rpc_request", "email": emails[0], "code": "000000"}).encode()
        for _ in range(WARM_UP_REQUESTS):
            http_connection.timed("GET", "/healthz")
            rpc.call(request)
        yield Rig(stack, sink, echo, http_connection, rpc, request, list(zip(emails, codes)))
    finally:
        for client in (rpc, http_connection):
            if client is not None:
                client.close()
        for process in (echo, stack):
            if process is not None:
                process.stop()
        sink.stop()
        mine.remove()


def measure_confirm(
    settings: dict[str, str], users: int, wrong_codes: int, log_dir: Path, leftovers: list[Leftovers]
) -> ConfirmOutcome:
    """One repetition on a fresh stack (``rig``)."""
    with rig(settings, users, log_dir, leftovers) as ready:
        confirm, healthz, round_trips, unexpected = [], [], [], 0
        for email, code in ready.accounts:
            for submitted, expected in [(wrong_code(code), 400)] * wrong_codes + [(code, 200)]:
                status, seconds = ready.http.timed("POST", "/auth/confirm", {"email": email, "code": submitted})
                confirm.append(seconds)
                unexpected += status != expected
                healthz.append(ready.http.timed("GET", "/healthz")[1])
                round_trips.append(ready.rpc.call(ready.rpc_request))
        return ConfirmOutcome(
            run=LatencyRun(tuple(confirm), tuple(healthz), tuple(round_trips), unexpected),
            auth_peak_rss_bytes=peak_rss_bytes(process_tree(ready.stack.auth.started.pid)),
            worker_peak_rss_bytes=peak_rss_bytes(process_tree(ready.stack.worker.started.pid)),
        )


def start_stack(log_dir: Path, overrides: dict[str, str], smtp_port: int, attempts: int = 3) -> LocalStack:
    """A started stack; on a shared machine a free port can be taken between choosing and binding it,
    so a stack that does not come up is tried again on new ports."""
    for attempt in range(1, attempts + 1):
        stack = ProjectStack(log_dir / f"stack{attempt}", overrides, smtp_port)
        try:
            return stack.start()  # stops what it started if it fails
        except RuntimeError as error:
            if attempt == attempts:
                raise
            log.warning("the stack did not come up, trying new ports: %s", str(error).splitlines()[0])
    raise AssertionError("unreachable")


def declare_quorum_queue(rabbitmq_url: str, name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        connection.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        connection.close()
