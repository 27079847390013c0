"""How long POST /auth/resend-code takes: an address with a pending account versus an unknown one.

The answer is the same 202 for both (no enumeration), so the time must not
tell them apart either. Runs both services as real processes (waitress, the
worker, this machine's RabbitMQ and Redis, a local SMTP sink), as ``make
demo`` does; registers one pending account per run, then alternates a resend
for a pending address with a resend for a never-registered one (in random
order within each pair), each address asked once (the cooldown never
answers), over one kept-alive connection, with a pause before each request,
as a prober spacing its requests would have.
Prints one JSON line with the median and 95th percentile of each kind.

    make bench-resend
    python -m bench.resend_timing --runs 300
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import time
import uuid

from bench.stack import benchmark_stack

COOLDOWN_SECONDS = 2
PASSWORD = "correct horse battery staple"  # noqa: S105 (benchmark accounts)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "p95": round(percentile(values, 0.95), 3)}


class Client:
    """One HTTP/1.1 connection to the real server, reused for every request."""

    def __init__(self, port: int):
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: dict) -> tuple[int, float]:
        payload = json.dumps(body)
        start = time.perf_counter()
        self._connection.request("POST", path, payload, {"Content-Type": "application/json"})
        response = self._connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self._connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="resends of each kind")
    parser.add_argument("--warmup", type=int, default=10, help="pairs sent first and not counted")
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=200.0,
        help="pause before each request, so that none overlaps the background work (the worker's mail "
        "included) that the previous one started",
    )
    args = parser.parse_args()

    overrides = {
        "BCRYPT_ROUNDS": "4",
        "ALLOW_WEAK_BCRYPT": "true",
        "APP_ENV": "production",
        "JWT_SECRET": "resend-timing-bench-jwt-secret-0123456789abcdef",
        "CODE_HMAC_KEY": "resend-timing-bench-code-key-0123456789abcdef",
        # Registering starts the address's cooldown; a short one has run out before the resends begin,
        # and each address is asked once, so every resend does the cooldown's Redis write and passes.
        "RESEND_COOLDOWN_SECONDS": str(COOLDOWN_SECONDS),
    }
    pending_ms: list[float] = []
    unknown_ms: list[float] = []
    with benchmark_stack(overrides) as stack:
        client = Client(stack.auth_port)
        pairs = args.warmup + args.runs
        pending = [f"bench-pending-{uuid.uuid4().hex[:12]}@example.com" for _ in range(pairs)]
        for address in pending:
            status, _ = client.post("/auth/register", {"email": address, "password": PASSWORD})
            assert status == 201, status
        time.sleep(COOLDOWN_SECONDS + 1.0)  # the registrations' cooldowns run out, their mails go out
        for index, address in enumerate(pending):
            unknown = f"bench-unknown-{uuid.uuid4().hex[:12]}@example.com"
            # A random order in each pair, so that whatever a request leaves behind falls on both kinds alike.
            order = [(address, pending_ms), (unknown, unknown_ms)]
            random.shuffle(order)
            for target, times in order:
                time.sleep(args.gap_ms / 1000)
                status, elapsed = client.post("/auth/resend-code", {"email": target})
                assert status == 202, status
                if index >= args.warmup:
                    times.append(elapsed)
        client.close()
    pending_figures, unknown_figures = figures(pending_ms), figures(unknown_ms)
    print(
        json.dumps(
            {
                "bench": "resend_timing",
                "runs_each": args.runs,
                "gap_ms": args.gap_ms,
                "pending_address_ms": pending_figures,
                "unknown_address_ms": unknown_figures,
                "median_ratio_pending_to_unknown": round(pending_figures["median"] / unknown_figures["median"], 3),
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
