"""This machine's RabbitMQ and Redis, as the integration tests of the stack reach them."""

from __future__ import annotations

import pytest

from common.settings import ServiceSettings
from devtools.stack import environment, preflight


def servers_or_fail() -> dict[str, str]:
    """RABBITMQ_URL and REDIS_URL of the shared servers; fails, saying what is down and how to start it."""
    shared = ServiceSettings.from_env(environment())
    urls = {"RABBITMQ_URL": shared.rabbitmq_url, "REDIS_URL": shared.redis_url}
    problems = preflight(urls["RABBITMQ_URL"], urls["REDIS_URL"])
    if problems:
        pytest.fail("integration tests need this machine's servers:\n" + "\n".join(problems))
    return urls


def work_queues(names: dict[str, str]) -> list[str]:
    return [value for key, value in names.items() if key.endswith("_QUEUE")]
