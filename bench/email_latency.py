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

from bench.stack import benchmark_stack
from devtools.load import register_and_confirm_many, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--bcrypt-rounds", default="12", help="the production default; lower it to load the worker")
    args = parser.parse_args()

    overrides = {"BCRYPT_ROUNDS": args.bcrypt_rounds, "AUTH_THREADS": str(max(32, args.concurrency))}
    with benchmark_stack(overrides) as stack:
        runs = register_and_confirm_many(stack, args.users, args.concurrency)
    result = {"benchmark": "201_to_code_email", **vars(args), **summary(runs), "cpus": os.cpu_count()}
    print(json.dumps(result))
    return 0 if result["complete"] == args.users else 1


if __name__ == "__main__":
    sys.exit(main())
