"""How the auth service's HTTP edge holds up against the attacks of docs/security.md, "Hardening against an
attack from outside".

Runs ``python -m auth_service`` as a process with its default settings (rate
limits off unless a probe needs them) on this machine's RabbitMQ and Redis,
without the email worker, and prints one JSON line per probe:

- ``half_open``: /healthz latency while N connections each hold half a request line
- ``oversized_upload``: time to the 413 for a 200 MiB Content-Length sent without its body, and how much
  of a streamed body the server takes in (kernel buffers) before it closes
- ``made_up_methods``: /metrics size and the process's RSS before and after N requests with 4,000-character methods
- ``waiting_confirms``: /healthz, login and register latency while N confirms wait for a worker that is not
  there, and what the confirms answered, how soon
- ``hung_limit_store``: request latency with RATELIMIT_STORAGE_URI pointing at a server that never answers

    python -m bench.http_edge
    python -m bench.http_edge --half-open 900 --methods 2000 --confirms 40
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from bench import local_servers
from devtools.probes import SilentServer, half_open_connections, read_response, upload_headers
from devtools.stack import LocalStack, delete_run, http_json, unique_names

PASSWORD = "correct horse battery staple"  # noqa: S105 (benchmark accounts)
MiB = 1024 * 1024
T = TypeVar("T")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def new_email() -> str:
    return f"bench-{uuid.uuid4().hex[:12]}@example.com"


def rss_kib(stack: LocalStack) -> int:
    if stack.auth.process is None:
        return -1
    for line in Path(f"/proc/{stack.auth.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def half_open(stack: LocalStack, count: int) -> dict:
    connections = half_open_connections(stack.auth_port, count)
    latencies = []
    try:
        for _ in range(20):
            latencies.append(timed(lambda: http_json("GET", f"{stack.base_url}/healthz", timeout=10))[1])
    except OSError:
        return {"connections": count, "healthz": "no answer in 10 s"}
    finally:
        for connection in connections:
            connection.close()
    return {"connections": count, "healthz_median_ms": ms(statistics.median(latencies)), "worst_ms": ms(max(latencies))}


def oversized_upload(stack: LocalStack) -> dict:
    head = upload_headers("/auth/register", 200 * MiB)
    answer: dict[str, int | float | str]
    with socket.create_connection(("127.0.0.1", stack.auth_port), timeout=10) as connection:
        connection.sendall(head)
        try:
            (status, _, _), elapsed = timed(lambda: read_response(connection))
            answer = {"status": status, "answer_ms": ms(elapsed)}
        except OSError:
            answer = {"status": "no answer in 10 s without the body"}
    taken = 0
    with socket.create_connection(("127.0.0.1", stack.auth_port), timeout=30) as connection:
        connection.sendall(head)
        try:
            while taken < 200 * MiB:
                connection.sendall(b"a" * 65536)
                taken += 65536
        except ConnectionError:
            pass
    return {**answer, "body_bytes_taken_before_close": taken}


def made_up_methods(stack: LocalStack, count: int) -> dict:
    before = (len(http_json("GET", f"{stack.base_url}/metrics")[2]), rss_kib(stack))
    for n in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", stack.auth_port, timeout=30)
        try:
            connection.request("X" + secrets.token_hex(2000).upper()[:3999], "/auth/login" if n % 2 else "/")
            connection.getresponse().read()
        finally:
            connection.close()
    after = (len(http_json("GET", f"{stack.base_url}/metrics")[2]), rss_kib(stack))
    return {
        "requests": count,
        "metrics_bytes_before": before[0],
        "metrics_bytes_after": after[0],
        "rss_kib_before": before[1],
        "rss_kib_after": after[1],
    }


def waiting_confirms(stack: LocalStack, count: int) -> dict:
    email = new_email()
    stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    with ThreadPoolExecutor(count) as pool:
        confirms = [
            pool.submit(timed, lambda: stack.call("POST", "/auth/confirm", {"email": email, "code": "000000"}))
            for _ in range(count)
        ]
        time.sleep(0.5)
        others = {
            "healthz": timed(lambda: stack.call("GET", "/healthz"))[1],
            "login": timed(lambda: stack.call("POST", "/auth/login", {"email": new_email(), "password": PASSWORD}))[1],
            "register": timed(
                lambda: stack.call("POST", "/auth/register", {"email": new_email(), "password": PASSWORD})
            )[1],
        }
        answers = [future.result() for future in confirms]
    slowest: dict[str, float] = {}
    for (status, _, _), seconds in answers:
        slowest[str(status)] = max(slowest.get(str(status), 0.0), ms(seconds))
    return {
        "confirms": count,
        **{f"{name}_ms": ms(seconds) for name, seconds in others.items()},
        "confirm_statuses": dict(Counter(str(status) for (status, _, _), _ in answers)),
        "slowest_confirm_ms_by_status": slowest,
    }


def hung_limit_store(stack: LocalStack) -> dict:
    calls = {
        "login": lambda: stack.call("POST", "/auth/login", {"email": new_email(), "password": PASSWORD}),
        "register": lambda: stack.call("POST", "/auth/register", {"email": new_email(), "password": PASSWORD}),
        "healthz": lambda: stack.call("GET", "/healthz"),
    }
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(10):
        for name, call in calls.items():
            latencies[name].append(timed(call)[1])
    return {
        f"{name}_ms": {"first": ms(values[0]), "median": ms(statistics.median(values)), "worst": ms(max(values))}
        for name, values in latencies.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half-open", type=int, default=300, help="half-open connections held at once")
    parser.add_argument("--methods", type=int, default=1000, help="requests with made-up methods")
    parser.add_argument("--confirms", type=int, default=24, help="parallel confirms with no worker")
    args = parser.parse_args()

    servers = local_servers()
    if servers is None:
        return 1
    rabbitmq_url, redis_url = servers
    base = {"RABBITMQ_URL": rabbitmq_url, "REDIS_URL": redis_url, "BCRYPT_ROUNDS": "4", "APP_ENV": "development"}
    runs = []
    with SilentServer() as silent:
        for probes, overrides in (
            (
                [
                    ("half_open", lambda stack: half_open(stack, args.half_open)),
                    ("oversized_upload", oversized_upload),
                    ("made_up_methods", lambda stack: made_up_methods(stack, args.methods)),
                    ("waiting_confirms", lambda stack: waiting_confirms(stack, args.confirms)),
                ],
                {"RATELIMIT_ENABLED": "false"},
            ),
            ([("hung_limit_store", hung_limit_store)], {"RATELIMIT_STORAGE_URI": silent.redis_url}),
        ):
            names = unique_names("bench")
            stack = LocalStack(Path(tempfile.mkdtemp(prefix="bench-edge-")), {**base, **names, **overrides})
            try:
                stack.start(worker=False)
                for name, probe in probes:
                    runs.append({"benchmark": f"http_edge.{name}", **probe(stack), "cpus": os.cpu_count()})
                    print(json.dumps(runs[-1]), flush=True)
            finally:
                stack.stop()
                delete_run(rabbitmq_url, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
