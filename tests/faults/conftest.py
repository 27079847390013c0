"""Private servers a fault test may stop and start, and the system wired to them.

RabbitMQ and Redis run as this session's own processes on free ports
(pytest-rabbitmq's and pytest-redis's executors), never the machine's shared
ones; auth and the worker run as real child processes (``LocalStack``). Each
test records its figures (registrations driven / delivered / lost /
duplicated); they are printed at the end of the session and written to
``fault-figures.json`` in pytest's base temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_redis import factories as redis_factories

from devtools.stack import LocalStack, delete_queues, unique_names
from tests.faults.harness import FIGURE_COLUMNS, FaultRun, retry_delays
from tests.faults.private_rabbitmq import start_private_rabbitmq

# Long enough in total (32 s) to outlast the 20 s SMTP outage, short enough for a test.
TEST_RETRY_DELAYS = "1,3,8,20"

FIGURES: list[dict] = []


@dataclass
class PrivateRedis:
    executor: object
    port: int
    datadir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def crash_and_restart_empty(self, down_seconds: float) -> None:
        """SIGKILL, as a crash would; the new process starts with no data."""
        self.executor.kill()
        for dump in self.datadir.glob("dump.*.rdb"):
            dump.unlink()
        time.sleep(down_seconds)
        self.executor.start()


@pytest.fixture(scope="session")
def private_rabbitmq(tmp_path_factory):
    broker = start_private_rabbitmq(tmp_path_factory.mktemp("private-rabbitmq"), "loopback_users.guest = true\n")
    yield broker
    with contextlib.suppress(Exception):
        broker.stop()


private_redis_proc = redis_factories.redis_proc(executable=shutil.which("redis-server") or "/usr/bin/redis-server")


@pytest.fixture(scope="session")
def private_redis(private_redis_proc):
    datadir = Path(private_redis_proc.unixsocket).parent
    return PrivateRedis(private_redis_proc, private_redis_proc.port, datadir)


@pytest.fixture
def fault_run(private_rabbitmq, private_redis, tmp_path):
    """Start the system on the private servers; ``fault_run(**settings)`` returns a ``FaultRun``."""
    runs: list[FaultRun] = []

    def start(**settings: str) -> FaultRun:
        names = unique_names("fault")
        overrides = {
            **names,
            "RABBITMQ_URL": private_rabbitmq.url,
            "REDIS_URL": private_redis.url,
            "RATELIMIT_STORAGE_URI": private_redis.url,
            "RATELIMIT_ENABLED": "false",
            "BCRYPT_ROUNDS": "4",
            # As recommended for production: a key that survives a Redis loss, so a
            # message in flight at the crash mails the same code again.
            "CODE_HMAC_KEY": "fault-test-code-key-0123456789abcdef0123",
            "RETRY_DELAYS_SECONDS": TEST_RETRY_DELAYS,
            "MAX_CODES_PER_HOUR": "50",
            "MAX_CODES_PER_DAY": "50",
            **settings,
        }
        stack = LocalStack(tmp_path / "logs", overrides)
        run = FaultRun(stack, private_rabbitmq.url, names)
        runs.append(run)
        stack.start()
        return run

    yield start
    for run in runs:
        run.stack.stop()
        with contextlib.suppress(Exception):  # the broker may be the thing a failed test left stopped
            delete_queues(private_rabbitmq.url, run.work_queues, retry_delays(run.stack.env))


@pytest.fixture
def record_figures():
    def record(figures: dict) -> None:
        FIGURES.append(figures)

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.section("fault-injection figures")
    header = "  ".join(f"{column:>{width}}" for column, width in FIGURE_COLUMNS)
    terminalreporter.write_line(header)
    columns = {column for column, _ in FIGURE_COLUMNS}
    for figures in FIGURES:
        row = "  ".join(f"{figures.get(column, ''):>{width}}" for column, width in FIGURE_COLUMNS)
        extra = ", ".join(f"{key}: {value}" for key, value in figures.items() if key not in columns)
        terminalreporter.write_line(f"{row}  {extra}".rstrip())
    basetemp = config._tmp_path_factory.getbasetemp() if hasattr(config, "_tmp_path_factory") else None
    if basetemp is not None:
        path = Path(basetemp) / "fault-figures.json"
        path.write_text(json.dumps(FIGURES, indent=2))
        terminalreporter.write_line(f"(also written to {path})")
