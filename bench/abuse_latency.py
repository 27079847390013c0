"""What each sign-up abuse check adds to POST /auth/register: the median (and 95th percentile) with none,
with each check alone, and with all three, in one run.

One auth process per configuration, all running at once as replicas of one
system (one worker, one set of queues on this machine's RabbitMQ and Redis: a
set per configuration would load the broker with quorum queues), each with a
local fake of the outside API on loopback (devtools/abuse_fakes.py): the
CAPTCHA's siteverify, the Pwned Passwords range API (padded answers of 900
lines, as the real one's). The
registrations go round the configurations in a random order each round, so
that whatever load the machine has falls on every configuration alike; each
configuration's figure is then the same run's. The breached-password check is
timed twice: with a new password each time (the range is fetched and parsed)
and with one password (the range comes from the cache). BCRYPT_ROUNDS is 4,
so that the hash, the same in every configuration, does not drown the
difference; at the production cost (12) every figure gains the same ~250 ms.

A real provider adds its network round trip to the CAPTCHA and to an uncached
range, which a loopback fake cannot show: in production, read
``captcha_verify_seconds`` and the range calls' spans.

    python -m bench.abuse_latency
    python -m bench.abuse_latency --runs 300
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import time
import uuid

from bench.resend_timing import Client
from bench.stack import benchmark_stack
from devtools.abuse_fakes import CaptchaFake, PwnedPasswordsFake
from devtools.mailsink import free_port
from devtools.stack import LocalStack, Service, http_json

PASSWORD = "correct horse battery staple"  # noqa: S105 (benchmark accounts)
READY_SECONDS = 60


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def configurations(ranges: PwnedPasswordsFake, captcha: CaptchaFake) -> dict[str, dict[str, str]]:
    captcha_settings = {
        "CAPTCHA_PROVIDER": "turnstile",
        "CAPTCHA_SECRET": captcha.secret,
        "CAPTCHA_VERIFY_URL": f"{captcha.url}/siteverify",
    }
    breach_settings = {"PWNED_PASSWORDS_URL": ranges.url}
    disposable_settings = {"BLOCK_DISPOSABLE_ADDRESSES": "true"}
    return {
        "none": {},
        "captcha": captcha_settings,
        "breached_api": breach_settings,
        "breached_cached": breach_settings,
        "disposable": disposable_settings,
        "all": {**captcha_settings, **breach_settings, **disposable_settings},
    }


def body(name: str, captcha: CaptchaFake) -> dict:
    # A new password each time misses the cache (a new prefix, almost surely); the same one hits it.
    password = f"bench passphrase {uuid.uuid4().hex}" if name in ("breached_api", "all") else PASSWORD
    request = {"email": f"bench-abuse-{uuid.uuid4().hex[:12]}@example.com", "password": password}
    if name in ("captcha", "all"):
        request["captcha_token"] = captcha.new_token()
    return request


def start_replica(stack: LocalStack, settings: dict[str, str], replicas: contextlib.ExitStack) -> int:
    """Another auth process of ``stack``'s system (its queues, its worker), with ``settings`` of its own."""
    port = free_port()
    log = stack.auth.log_path.with_name(f"auth-{port}.log")
    replica = Service("auth_service", stack.env, log, {**settings, "AUTH_PORT": str(port)}).start()
    replicas.callback(replica.stop)
    deadline = time.monotonic() + READY_SECONDS
    while True:
        if replica.exit_code() is not None:
            raise RuntimeError(f"an auth replica exited:\n{replica.log_text()[-2000:]}")
        with contextlib.suppress(OSError):
            if http_json("GET", f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200:
                return port
        if time.monotonic() > deadline:
            raise RuntimeError(f"an auth replica was not ready after {READY_SECONDS} s")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150, help="registrations timed per configuration")
    parser.add_argument("--warmup", type=int, default=10, help="rounds sent first and not counted")
    parser.add_argument(
        "--gap-ms", type=float, default=30.0, help="pause before each request, so that the worker's mail is done"
    )
    args = parser.parse_args()
    base = {
        "BCRYPT_ROUNDS": "4",
        "ALLOW_WEAK_BCRYPT": "true",
        "APP_ENV": "production",
        "JWT_SECRET": "abuse-latency-bench-jwt-secret-0123456789abcdef",
        "CODE_HMAC_KEY": "abuse-latency-bench-code-key-0123456789abcdef",
        "WORKER_PROCESSES": "1",
        "LOG_LEVEL": "WARNING",
    }
    times: dict[str, list[float]] = {}
    with (
        PwnedPasswordsFake() as ranges,
        CaptchaFake() as captcha,
        benchmark_stack(base) as stack,
        contextlib.ExitStack() as replicas,
    ):
        clients = {}
        for name, settings in configurations(ranges, captcha).items():
            port = stack.auth_port if not settings else start_replica(stack, settings, replicas)
            clients[name] = Client(port)
            replicas.callback(clients[name].close)
            times[name] = []
        for index in range(args.warmup + args.runs):
            order = list(clients)
            random.shuffle(order)
            for name in order:
                time.sleep(args.gap_ms / 1000)
                status, elapsed = clients[name].post("/auth/register", body(name, captcha))
                assert status == 201, (name, status)
                if index >= args.warmup:
                    times[name].append(elapsed)
        range_calls = len(ranges.requests)
    none = statistics.median(times["none"])
    figures = {
        name: {
            "p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(percentile(values, 0.95), 2),
            "added_p50_ms": round(statistics.median(values) - none, 2),
        }
        for name, values in times.items()
    }
    print(
        json.dumps(
            {
                "bench": "abuse_latency",
                "runs_each": args.runs,
                "gap_ms": args.gap_ms,
                "range_api_calls": range_calls,
                **figures,
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
