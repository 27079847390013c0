"""Both services as real processes on this machine's RabbitMQ and Redis, with a mail sink.

Every stack gets queue names and Redis key prefixes of its own (deleted at the
end), so runs never collide with each other or with a developer's system.
"""

from __future__ import annotations

import os

import pytest

from devtools.stack import LocalStack, delete_run, preflight, unique_names

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
    # The webhook dispatcher's queue and its retry queues are eight quorum queues more per stack: only the
    # stacks that deliver webhooks (tests/integration/test_webhooks.py) run it.
    "WEBHOOK_DISPATCHER": "false",
}


@pytest.fixture(scope="session", autouse=True)
def servers_answer():
    problems = preflight(RABBITMQ_URL, REDIS_URL)
    if problems:
        pytest.fail("integration tests need this machine's servers:\n" + "\n".join(problems))


class Stacks:
    """Stacks started for one scope, stopped and cleaned up when that scope ends.

    Every stack holds eighteen quorum queues: a broker on two cores that keeps
    a few hundred of them at once stops answering handshakes, so a test's
    stacks go as soon as the test (or module) is done, not at the end of the run.
    """

    def __init__(self, tmp_path_factory):
        self._tmp_path_factory = tmp_path_factory
        self._started: list[tuple[LocalStack, dict]] = []

    def start(self, worker: bool = True, **overrides: str) -> LocalStack:
        names = unique_names("it")
        stack = LocalStack(self._tmp_path_factory.mktemp("stack"), {**BASE_OVERRIDES, **names, **overrides})
        self._started.append((stack, names))
        return stack.start(worker=worker)

    def close(self) -> None:
        # Every process is stopped before any cleanup, so that a broker too slow to delete a queue leaves none running.
        for stack, _ in self._started:
            stack.stop()
        for stack, names in self._started:
            # A stack with a retry ladder of its own has retry queues of its own to delete.
            delays = stack.env.get("RETRY_DELAYS_SECONDS")
            schedule = stack.env.get("WEBHOOK_RETRY_SCHEDULE")
            delete_run(
                RABBITMQ_URL,
                names,
                tuple(int(delay) for delay in delays.split(",")) if delays else None,
                tuple(int(delay) for delay in schedule.split(",")) if schedule else None,
                redis_url=REDIS_URL,
            )
        self._started.clear()


@pytest.fixture
def start_stack(tmp_path_factory):
    """Start a stack with extra settings for one test; it is stopped and cleaned up when the test ends."""
    stacks = Stacks(tmp_path_factory)
    yield stacks.start
    stacks.close()


@pytest.fixture(scope="module")
def start_module_stack(tmp_path_factory):
    """The same for a module's shared stacks, cleaned up when the module ends."""
    stacks = Stacks(tmp_path_factory)
    yield stacks.start
    stacks.close()


@pytest.fixture(scope="session")
def start_session_stack(tmp_path_factory):
    stacks = Stacks(tmp_path_factory)
    yield stacks.start
    stacks.close()


@pytest.fixture(scope="session")
def stack(start_session_stack) -> LocalStack:
    """One stack shared by the tests that need no settings of their own."""
    return start_session_stack()
