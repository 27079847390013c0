"""Benchmarks on this machine; each prints its figures as JSON lines."""

from __future__ import annotations

import os
import sys


def local_servers() -> tuple[str, str] | None:
    """This machine's RabbitMQ and Redis URLs (``RABBITMQ_URL``, ``REDIS_URL``); None, saying why, if one is down."""
    # Imported here, not above: the benchmark's auth process (bench.indexed_mongo) imports this package, and
    # the stack's tooling (a mail sink on aiosmtpd, pika's adapters, ...) would count as auth's memory.
    from devtools.stack import preflight

    rabbitmq_url = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    problems = preflight(rabbitmq_url, redis_url)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return None
    return rabbitmq_url, redis_url
