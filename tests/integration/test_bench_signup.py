"""The sign-up comparison (bench/auth_peers.py) in small, on this machine's RabbitMQ and Redis: every
registration mailed, every confirm answered as its code calls for, and nothing left behind by any system.

The peers are the benchmark's own dependencies (requirements/bench.txt, npm under bench/peers/): a peer
that cannot run here is left out with its reason, as the benchmark itself does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench import auth_peers, compare
from bench.workload import Leftovers
from tests.integration.conftest import RABBITMQ_URL, REDIS_URL
from tests.integration.test_bench_compare import every_queue_of, exchange_exists, queue_exists, redis_keys

pytestmark = pytest.mark.integration

SMALL = auth_peers.SignupOptions(
    reps=1, users=3, wrong_codes=2, clients=2, burst_seconds=1.5, default_users=1, default_burst_seconds=0.5
)


def _peer_folders() -> set[str]:
    return {path.name for path in Path(tempfile.gettempdir()).glob("bench-signup-peer-*")}


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.setenv("RABBITMQ_URL", RABBITMQ_URL)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    return compare.bench_settings()


def _system(name: str, settings: dict[str, str], leftovers: list[Leftovers]) -> auth_peers.SignupSystem:
    if name == "project":
        return auth_peers.Project(settings, leftovers)
    system: auth_peers.SignupSystem = auth_peers.Allauth() if name == "allauth" else auth_peers.BetterAuth()
    reason = system.unavailable()
    if reason is not None:
        pytest.skip(f"{system.name} cannot run here: {reason}")
    return system


@pytest.mark.parametrize("name", ["project", "allauth", "better-auth"])
def test_a_system_registers_mails_confirms_and_leaves_nothing_behind(settings, tmp_path, name):
    leftovers: list[Leftovers] = []
    system = _system(name, settings, leftovers)
    folders_before = _peer_folders()
    said: list[str] = []

    runs = auth_peers.measure([system], SMALL, tmp_path, said.append)

    cheap, default = runs
    assert (cheap.hash, default.hash) == ("cheap", "default")
    assert cheap.unexpected == 0 and default.unexpected == 0, said
    assert len(cheap.register_to_mail) == 3 and len(default.register_to_mail) == 1
    assert len(cheap.confirm_wrong) == 6 and len(cheap.confirm_right) == 3
    assert default.confirm_right == () and default.confirm_wrong == ()
    for run in runs:
        assert run.registrations > 0 and run.mailed >= run.registrations
        assert run.cpu_seconds > 0 and run.rss_bytes and all(size > 10 * 2**20 for size in run.rss_bytes.values())
    assert (cheap.infra_cpu_seconds > 0) == (name == "project")
    assert _peer_folders() <= folders_before  # each peer's folder (its SQLite database) is gone
    if name == "project":
        assert set(cheap.rss_bytes) >= {"auth", "worker supervisor", "worker 1"}
        for run in runs:  # the stand-in holds at least an account for each registration, in bytes auth holds
            assert run.stand_in["documents"] >= run.registrations
            assert 0 < run.stand_in["bytes"] < run.rss_bytes["auth"]
            # ... and spent a part of auth's CPU in the burst on them
            assert run.stand_in_cpu_seconds is not None
            assert 0 < run.stand_in_cpu_seconds < run.cpu_by_process["auth"]
    else:
        assert cheap.stand_in == {} and default.stand_in == {}
        assert cheap.stand_in_cpu_seconds is None and default.stand_in_cpu_seconds is None
        for run_leftovers in leftovers:
            assert [queue for queue in every_queue_of(run_leftovers.work_queues) if queue_exists(queue)] == []
            assert [exchange for exchange in run_leftovers.exchanges if exchange_exists(exchange)] == []
            assert redis_keys(run_leftovers.redis_prefixes) == []


def test_a_peer_that_cannot_run_is_named_with_its_reason(monkeypatch):
    monkeypatch.setattr(auth_peers.shutil, "which", lambda command: None)
    said: list[str] = []
    kept = auth_peers.available([auth_peers.BetterAuth()], said.append)
    assert kept == []
    assert said == ["sign-up: better-auth skipped: Node.js is not installed (Debian: apt-get install nodejs npm)"]
