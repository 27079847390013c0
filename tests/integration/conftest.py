"""Both services as real processes on this machine's RabbitMQ and Redis, with a mail sink.

Every stack gets queue names and Redis key prefixes of its own (deleted at the
end), so runs never collide with each other or with a developer's system.
"""

from __future__ import annotations

import os

import pytest
import redis

from devtools.stack import LocalStack, delete_queues, preflight, unique_names

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

BASE_OVERRIDES = {
    "RABBITMQ_URL": RABBITMQ_URL,
    "REDIS_URL": REDIS_URL,
    "RATELIMIT_STORAGE_URI": REDIS_URL,
    "RATELIMIT_ENABLED": "false",
    # Production mode, as deployed; only the bcrypt cost is lowered, explicitly, to keep the suite fast.
    "APP_ENV": "production",
    "BCRYPT_ROUNDS": "4",
    "ALLOW_WEAK_BCRYPT": "true",
    "JWT_SECRET": "integration-test-jwt-secret-0123456789abcdef",
    "CODE_HMAC_KEY": "integration-test-code-key-0123456789abcdef",
}


@pytest.fixture(scope="session", autouse=True)
def servers_answer():
    problems = preflight(RABBITMQ_URL, REDIS_URL)
    if problems:
        pytest.fail("integration tests need this machine's servers:\n" + "\n".join(problems))


@pytest.fixture(scope="session")
def start_stack(tmp_path_factory):
    """Start a stack with extra settings; everything started is stopped and cleaned up at the end."""
    started: list[tuple[LocalStack, dict]] = []

    def start(worker: bool = True, **overrides: str) -> LocalStack:
        names = unique_names("it")
        log_dir = tmp_path_factory.mktemp("stack")
        stack = LocalStack(log_dir, {**BASE_OVERRIDES, **names, **overrides})
        started.append((stack, names))
        return stack.start(worker=worker)

    yield start
    # Every process is stopped before any cleanup, so that a broker too slow to delete a queue leaves none running.
    for stack, _ in started:
        stack.stop()
    client = redis.Redis.from_url(REDIS_URL)
    for _, names in started:
        delete_queues(RABBITMQ_URL, [value for key, value in names.items() if key.endswith("_QUEUE")])
        for pattern in (f"{names['REDIS_KEY_PREFIX']}:*", f"*{names['RATELIMIT_KEY_PREFIX']}*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)


@pytest.fixture(scope="session")
def stack(start_stack) -> LocalStack:
    return start_stack()
