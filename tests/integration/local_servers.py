"""This machine's RabbitMQ and Redis, as the integration tests of the stack reach them."""

from __future__ import annotations

import pytest

from common.settings import environment
from devtools.stack import preflight


def servers_or_fail() -> dict[str, str]:
    """RABBITMQ_URL and REDIS_URL of the shared servers; fails, saying what is down and how to start it."""
    env = environment()
    urls = {
        "RABBITMQ_URL": env.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F"),
        "REDIS_URL": env.get("REDIS_URL", "redis://localhost:6379/0"),
    }
    problems = preflight(urls["RABBITMQ_URL"], urls["REDIS_URL"])
    if problems:
        pytest.fail("integration tests need this machine's servers:\n" + "\n".join(problems))
    return urls


def work_queues(names: dict[str, str]) -> list[str]:
    return [value for key, value in names.items() if key.endswith("_QUEUE")]
