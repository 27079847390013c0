"""The system for a benchmark: both services as processes on this machine's RabbitMQ and Redis."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import local_servers
from devtools.stack import LocalStack, delete_run, unique_names


@contextlib.contextmanager
def benchmark_stack(overrides: dict[str, str]) -> Iterator[LocalStack]:
    """A started stack on queues and keys of its own, stopped and cleaned up afterwards.

    Exits with status 1, saying what is down, if RabbitMQ or Redis does not answer.
    """
    servers = local_servers()
    if servers is None:
        raise SystemExit(1)
    rabbitmq_url, redis_url = servers
    names = unique_names("bench")
    settings = {
        **names,
        "RABBITMQ_URL": rabbitmq_url,
        "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": redis_url,
        "RATELIMIT_ENABLED": "false",
        **overrides,
    }
    stack = LocalStack(Path(tempfile.mkdtemp(prefix="bench-")), settings)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        delete_run(rabbitmq_url, names, redis_url=redis_url)
