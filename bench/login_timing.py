"""How long a 401 from POST /auth/login takes: unknown address versus wrong password.

The two must not be told apart by timing (account enumeration). Both go
through the real Flask app and the login flow at the given bcrypt cost, in
process, on the in-memory store; the requests alternate so that machine noise
falls on both alike. Prints one JSON line with medians, 90th percentiles and
their ratio.

    make bench-login
    python -m bench.login_timing --runs 60 --bcrypt-rounds 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from concurrent.futures import Future

import mongomock

from auth_service import bootstrap
from auth_service.adapters.cooldowns import InMemoryCooldowns
from auth_service.config import Settings
from common.messaging.messages import Purpose

PASSWORD = "correct horse battery staple"  # noqa: S105 (a benchmark account)


class DiscardingBus:
    """Registration publishes a code request; nobody needs it here."""

    connected = True

    def publish(self, queue, message, timeout):
        return None

    def publish_soon(self, queue, message) -> Future[None]:
        confirmed: Future[None] = Future()
        confirmed.set_result(None)
        return confirmed

    def request(self, queue, message, timeout):
        return None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="requests of each kind")
    parser.add_argument("--bcrypt-rounds", type=int, default=10)
    args = parser.parse_args()

    settings = Settings.from_env(
        {
            "APP_ENV": "development",
            "MONGO_URI": "mongomock://",
            "BCRYPT_ROUNDS": str(args.bcrypt_rounds),
            "RATELIMIT_ENABLED": "false",
        }
    )
    system = bootstrap.build(
        settings,
        mode=bootstrap.Mode.IN_PROCESS,
        database=mongomock.MongoClient()["bench"],
        bus=DiscardingBus(),
        cooldowns=InMemoryCooldowns(),
    )
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    user = system.registration.register(email, PASSWORD, None)
    system.verified_codes.apply_verified(Purpose.VERIFY_EMAIL, user.id, None, None, sequence=user.code_seq)
    client = system.app.test_client()

    def timed(body: dict) -> float:
        start = time.perf_counter()
        response = client.post("/auth/login", json=body)
        elapsed = time.perf_counter() - start
        assert response.status_code == 401, response.status_code
        return elapsed * 1000

    for _ in range(3):  # warm up both paths
        timed({"email": email, "password": "not the password"})
        timed({"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "not the password"})

    wrong, unknown = [], []
    for _ in range(args.runs):
        wrong.append(timed({"email": email, "password": "not the password"}))
        unknown.append(timed({"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "not the password"}))

    wrong_median, unknown_median = statistics.median(wrong), statistics.median(unknown)
    print(
        json.dumps(
            {
                "bench": "login_401_timing",
                "bcrypt_rounds": args.bcrypt_rounds,
                "runs_each": args.runs,
                "wrong_password_ms": {"median": round(wrong_median, 2), "p90": round(percentile(wrong, 0.9), 2)},
                "unknown_address_ms": {"median": round(unknown_median, 2), "p90": round(percentile(unknown, 0.9), 2)},
                "median_ratio_unknown_to_wrong": round(unknown_median / wrong_median, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
