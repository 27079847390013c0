"""The worker's supervisor (email_service/entrypoints/supervisor.py) on stand-in children."""

from __future__ import annotations

import signal
import sys

import pytest

from email_service.config import Settings
from email_service.entrypoints import supervisor
from tests.unit.conftest import BASE_ENV


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_a_child_that_keeps_exiting_makes_the_supervisor_exit_1_after_its_restarts(capsys):
    started: list[int] = []

    def failing(index: int) -> list[str]:
        started.append(index)
        return [sys.executable, "-c", "raise SystemExit(3)"]

    settings = Settings.from_env({**BASE_ENV, "WORKER_PROCESSES": "2"})
    assert supervisor.run(settings, command=failing) == 1
    assert len(started) == 2 + supervisor.MAX_RESTARTS


def test_each_process_serves_its_metrics_on_its_own_port_and_runs_alone():
    settings = Settings.from_env({**BASE_ENV, "WORKER_PROCESSES": "3", "WORKER_METRICS_PORT": "9100"})
    assert [settings.for_process(index).worker_metrics_port for index in range(3)] == [9100, 9101, 9102]
    assert settings.for_process(2).worker_processes == 1
    off = Settings.from_env({**BASE_ENV, "WORKER_METRICS_PORT": "0"})
    assert off.for_process(1).worker_metrics_port == 0


def test_by_default_one_process_per_cpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert Settings.from_env(BASE_ENV).worker_processes == 3
