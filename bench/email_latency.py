"""Time from a 201 to the code email arriving, for 100 users registering concurrently.

Runs both services as real processes on this machine's RabbitMQ and Redis with
a local SMTP sink, exactly as ``make demo`` does. Prints one JSON line.

    make bench                      # 100 users, 25 at a time
    python -m bench.email_latency --users 200 --concurrency 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench import local_servers
from devtools.load import register_and_confirm_many, summary
from devtools.stack import LocalStack, delete_queues, unique_names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--bcrypt-rounds", default="12", help="the production default; lower it to load the worker")
    args = parser.parse_args()

    servers = local_servers()
    if servers is None:
        return 1
    rabbitmq_url, redis_url = servers
    names = unique_names("bench")
    overrides = {
        **names,
        "RABBITMQ_URL": rabbitmq_url,
        "REDIS_URL": redis_url,
        "RATELIMIT_ENABLED": "false",
        "BCRYPT_ROUNDS": args.bcrypt_rounds,
        "AUTH_THREADS": str(max(32, args.concurrency)),
    }
    stack = LocalStack(Path(tempfile.mkdtemp(prefix="bench-")), overrides)
    try:
        stack.start()
        runs = register_and_confirm_many(stack, args.users, args.concurrency)
    finally:
        stack.stop()
        delete_queues(rabbitmq_url, [value for key, value in names.items() if key.endswith("_QUEUE")])
    result = {"benchmark": "201_to_code_email", **vars(args), **summary(runs), "cpus": os.cpu_count()}
    print(json.dumps(result))
    return 0 if result["complete"] == args.users else 1


if __name__ == "__main__":
    sys.exit(main())
