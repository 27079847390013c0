"""How long a code asked for by address takes (POST /auth/resend-code, /auth/password/forgot, /auth/login/code),
or a wrong code for one (POST /auth/password/reset, /auth/login/code/verify): an address with a confirmed
account, one with a pending account, and an unknown one.

The answer is the same for all (202 for an ask, 400 invalid_code for a wrong code: no enumeration), so the
time must not tell them apart either. Runs both services as real processes (waitress, the
worker, this machine's RabbitMQ and Redis, a local SMTP sink), as ``make
demo`` does; registers one pending and one confirmed account per run, then
asks for each kind of address in turn (in random order within each round),
each address asked once (the cooldown never answers), over one kept-alive
connection, with a pause before each request, as a prober spacing its
requests would have.
Prints one JSON line with the median and 95th percentile of each kind.

    make bench-resend
    python -m bench.resend_timing --endpoint forgot --runs 300
    python -m bench.resend_timing --endpoint login-code --runs 300
    python -m bench.resend_timing --endpoint reset --runs 300
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
ENDPOINTS = {
    "resend": "/auth/resend-code",
    "forgot": "/auth/password/forgot",
    "login-code": "/auth/login/code",
    "reset": "/auth/password/reset",
    "login-code-verify": "/auth/login/code/verify",
}
# A wrong code's fields besides the address, and the answer every address gets.
WRONG_CODE = {
    "reset": {"code": "000000", "new_password": "a brand new passphrase 7"},
    "login-code-verify": {"code": "000000"},
}
KINDS = ("confirmed", "pending", "unknown")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "p95": round(percentile(values, 0.95), 3)}


def bench_address(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:12]}@example.com"


def ratio(measured: dict[str, dict], kind: str) -> float:
    return round(measured[kind]["median"] / measured["unknown"]["median"], 3)


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
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="resend", help="which request to time")
    parser.add_argument("--runs", type=int, default=200, help="requests of each kind")
    parser.add_argument("--warmup", type=int, default=10, help="rounds sent first and not counted")
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=200.0,
        help="pause before each request, so that none overlaps the background work (the worker's mail "
        "included) that the previous one started",
    )
    args = parser.parse_args()
    path = ENDPOINTS[args.endpoint]

    overrides = {
        "BCRYPT_ROUNDS": "4",
        "ALLOW_WEAK_BCRYPT": "true",
        "APP_ENV": "production",
        "JWT_SECRET": "resend-timing-bench-jwt-secret-0123456789abcdef",
        "CODE_HMAC_KEY": "resend-timing-bench-code-key-0123456789abcdef",
        # Registering starts the address's cooldown; a short one has run out before the requests begin,
        # and each address is asked once, so every request does the cooldown's Redis write and passes.
        "RESEND_COOLDOWN_SECONDS": str(COOLDOWN_SECONDS),
    }
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with benchmark_stack(overrides) as stack:
        client = Client(stack.auth_port)
        rounds = args.warmup + args.runs
        accounts = {kind: [bench_address(kind) for _ in range(rounds)] for kind in KINDS}
        for kind in ("confirmed", "pending"):
            for address in accounts[kind]:
                status, _ = client.post("/auth/register", {"email": address, "password": PASSWORD})
                assert status == 201, status
        for address in accounts["confirmed"]:
            [mail] = stack.sink.wait_for(address, count=1, timeout=30)
            status, _ = client.post("/auth/confirm", {"email": address, "code": mail.code})
            assert status == 200, status
        time.sleep(COOLDOWN_SECONDS + 1.0)  # the registrations' cooldowns run out, their mails go out
        for index in range(rounds):
            # A random order in each round, so that whatever a request leaves behind falls on every kind alike.
            order = list(KINDS)
            random.shuffle(order)
            for kind in order:
                time.sleep(args.gap_ms / 1000)
                status, elapsed = client.post(
                    path, {"email": accounts[kind][index], **WRONG_CODE.get(args.endpoint, {})}
                )
                assert status == (400 if args.endpoint in WRONG_CODE else 202), status
                if index >= args.warmup:
                    times[kind].append(elapsed)
        client.close()
    measured = {kind: figures(values) for kind, values in times.items()}
    print(
        json.dumps(
            {
                "bench": "resend_timing",
                "endpoint": path,
                "runs_each": args.runs,
                "gap_ms": args.gap_ms,
                **{f"{kind}_address_ms": measured[kind] for kind in KINDS},
                **{f"median_ratio_{kind}_to_unknown": ratio(measured, kind) for kind in ("confirmed", "pending")},
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
