"""What asymmetric access tokens cost: ES256 against HS256, and the JWKS endpoint.

Two auth systems in this process, on the in-memory store, alike but for
JWT_ALGORITHM (ES256, the default, and HS256): a successful POST /auth/login
and GET /auth/me through the real Flask app and services, the requests of the
two alternating so that machine noise falls on both alike; GET
/.well-known/jwks.json; and, apart from HTTP, how many tokens one thread
signs and verifies per second with each algorithm (one thread: the figure is
per core). Prints one JSON line.

    make bench-login
    python -m bench.token_signing --runs 200 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable

import mongomock

from auth_service import bootstrap
from auth_service.adapters.cooldowns import InMemoryCooldowns
from auth_service.config import Settings
from auth_service.domain.signing_keys import ASYMMETRIC_ALGORITHMS, HS256, KeySet, generate_key, shared_secret_key
from auth_service.domain.tokens import TokenIssuer
from bench.login_timing import PASSWORD, DiscardingBus, percentile
from common.messaging.messages import Purpose

SECRET = "bench-jwt-secret-that-is-long-enough-0123456789"  # noqa: S105 (a benchmark's key)


def system_for(algorithm: str, bcrypt_rounds: int):
    settings = Settings.from_env(
        {
            "APP_ENV": "development",
            "MONGO_URI": "mongomock://",
            "JWT_SECRET": SECRET,
            "JWT_ALGORITHM": algorithm,
            "BCRYPT_ROUNDS": str(bcrypt_rounds),
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
    return system, email


def milliseconds(action) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p90": round(percentile(values, 0.9), 3)}


def per_second(action, seconds: float) -> int:
    done, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(50):
            action()
        done += 50
    return int(done / (time.perf_counter() - start))


def held(keys: KeySet) -> Callable[[], KeySet]:
    return lambda: keys


def throughput(seconds: float) -> dict[str, dict[str, int]]:
    """Tokens one thread signs and verifies per second, per algorithm, as the service does it."""
    figures = {}
    for algorithm in (*ASYMMETRIC_ALGORITHMS, HS256):
        key = shared_secret_key(SECRET) if algorithm == HS256 else generate_key(algorithm)
        issuer = TokenIssuer(held(KeySet.of(key, [key])), 900, "auth-service", "mobile-app")
        token, _ = issuer.issue("3779fbca576b4c1a92324bc0cd878bba", 0, "5c1d0c0a3e7f4b7e9a1f0d2c3b4a5968")
        figures[algorithm] = {
            "signed_per_second": per_second(lambda issuer=issuer: issuer.issue("u" * 32, 0, "s" * 32), seconds),
            "verified_per_second": per_second(lambda issuer=issuer, token=token: issuer.verify(token), seconds),
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="requests of each kind per algorithm")
    parser.add_argument("--bcrypt-rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per algorithm in the signing loop")
    args = parser.parse_args()

    systems = {algorithm: system_for(algorithm, args.bcrypt_rounds) for algorithm in ("ES256", HS256)}
    clients = {algorithm: system.app.test_client() for algorithm, (system, _) in systems.items()}
    tokens = {}
    for algorithm, (_, email) in systems.items():
        login = clients[algorithm].post("/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.json
        tokens[algorithm] = login.json["access_token"]

    login_ms: dict[str, list[float]] = {algorithm: [] for algorithm in systems}
    me_ms: dict[str, list[float]] = {algorithm: [] for algorithm in systems}
    jwks_ms: list[float] = []
    logins = max(10, args.runs // 10)  # bcrypt makes each login slow; the token is a sliver of it
    for run in range(args.runs):
        for algorithm, (_, email) in systems.items():
            client, bearer = clients[algorithm], {"Authorization": f"Bearer {tokens[algorithm]}"}
            me_ms[algorithm].append(
                milliseconds(lambda client=client, bearer=bearer: client.get("/auth/me", headers=bearer))
            )
            if run < logins:
                body = {"email": email, "password": PASSWORD}
                login_ms[algorithm].append(
                    milliseconds(lambda client=client, body=body: client.post("/auth/login", json=body))
                )
        jwks_ms.append(milliseconds(lambda: clients["ES256"].get("/.well-known/jwks.json")))

    print(
        json.dumps(
            {
                "bench": "token_signing",
                "runs": args.runs,
                "bcrypt_rounds": args.bcrypt_rounds,
                "login_ms": {algorithm: summary(values) for algorithm, values in login_ms.items()},
                "me_ms": {algorithm: summary(values) for algorithm, values in me_ms.items()},
                "jwks_ms": summary(jwks_ms),
                "per_core": throughput(args.seconds),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
