"""Webhook delivery latency: from an event's write to the receiver, p50 and p99 over 1,000 events.

The system runs as deployed by default: auth (API and dispatcher threads, WEBHOOK_DISPATCHER=true)
and the worker as processes on this machine's RabbitMQ and Redis, and one endpoint added through the
admin API, pointing at a receiver on loopback that verifies every delivery with the Standard Webhooks
library (devtools/webhook_receiver.py). Each event is a registration's ``user.registered``, which auth
writes into the account's outbox in the account's own insert: the figure is the receiver's arrival
time minus the account's ``created_at``, read back from the database afterwards (auth and the bench
share it through devtools/mongo_wire.py, this machine having no MongoDB server). The event can reach
the receiver before the 201 reaches the client: the request waits for the broker's confirm of its
publish, while the dispatcher is already at work. (From the request's start adds the registration
itself: bcrypt at BCRYPT_ROUNDS=4, and the write.) The path measured:
the outbox's publish, the broker, the dispatcher's fan-out (one MongoDB write per delivery), the
lane's claim, the signed POST, and the recording of the attempt before the next one.

    python -m bench.webhook_latency
    python -m bench.webhook_latency --events 200 --clients 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pymongo

from bench.stack import benchmark_stack
from bench.stats import percentile
from devtools.mailsink import free_port
from devtools.mongo_wire import MongoWireServer
from devtools.stack import http_json
from devtools.webhook_receiver import Receiver

PASSWORD = "correct horse battery staple"  # noqa: S105 (benchmark accounts)


def admin_key(env: dict[str, str]) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "auth_service", "admin-keys", "create", "--name", "bench", "--scopes", "webhooks:write"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2, help="registrations in flight at once")
    args = parser.parse_args(argv)

    mongo = MongoWireServer(free_port()).start()
    keys_file = f"/tmp/bench-admin-keys-{uuid.uuid4().hex[:8]}"  # noqa: S108 (a benchmark's own file)
    overrides = {
        "BCRYPT_ROUNDS": "4",
        "ALLOW_WEAK_BCRYPT": "true",
        "WEBHOOK_DISPATCHER": "true",
        "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
        "ADMIN_KEYS_FILE": keys_file,
        "MONGO_URI": mongo.uri,
    }
    written: dict[str, float] = {}
    started: dict[str, float] = {}
    lock = threading.Lock()
    with Receiver() as receiver, benchmark_stack(overrides) as stack:
        key = admin_key({**stack.env, **stack.auth.overrides})
        status, _, created = stack.admin_call(
            "POST", "/admin/webhooks", key, {"url": receiver.url, "events": ["user.registered"]}
        )
        if status != 201:
            print(f"could not add the endpoint: {status} {created}", file=sys.stderr)
            return 1
        receiver.secrets = [created["secret"]]

        def register(number: int) -> None:
            email = f"bench-hook-{number}-{uuid.uuid4().hex[:8]}@example.com"
            before = time.time()
            answer = http_json("POST", f"{stack.base_url}/auth/register", {"email": email, "password": PASSWORD})
            after = time.time()
            if answer[0] == 201:
                with lock:
                    started[email], written[email] = before, after

        began = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(register, range(args.events)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            arrived = {json.loads(r.body)["email"]: r for r in receiver.snapshot()}
            if set(written) <= arrived.keys():
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - began
        received = receiver.snapshot()
        client: pymongo.MongoClient[dict] = pymongo.MongoClient(mongo.uri, tz_aware=True)
        users = client[stack.env.get("MONGO_DB", "auth")]["users"]
        created = {document["email"]: document["created_at"].timestamp() for document in users.find({})}
    mongo.stop()
    if os.path.exists(keys_file):
        os.remove(keys_file)

    arrivals: dict[str, float] = {}
    for delivery in received:
        email = json.loads(delivery.body)["email"]
        arrivals.setdefault(email, delivery.arrived)
    latencies = [(arrivals[email] - created[email]) * 1000 for email in written if email in arrivals]
    from_request = [(arrivals[email] - started[email]) * 1000 for email in written if email in arrivals]
    missing = len(written) - len(latencies)
    unverified = sum(1 for delivery in received if not delivery.verified)
    print(f"{len(written)} events written ({args.clients} clients), {len(latencies)} delivered in {elapsed:.1f} s")
    if latencies:
        print(
            f"write -> receiver: p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
        )
        print(
            f"request start -> receiver: p50 {percentile(from_request, 0.5):.1f} ms, "
            f"p99 {percentile(from_request, 0.99):.1f} ms"
        )
    print(f"missing {missing}, unverified {unverified}, repeats {len(received) - len(arrivals)}")
    return 0 if missing == 0 and unverified == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
