"""`make bench` (bench/compare.py) on this machine's RabbitMQ and Redis, in small: every
mail delivered, and nothing left on the servers, also after an interrupt.

Celery is the benchmark's own dependency (requirements/bench.txt), not the
tests': these run the project's worker and the raw baseline only.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pika
import pika.exceptions
import psutil
import pytest
import redis

from bench import compare, confirm_cpu, confirm_latency
from bench import sink as smtp_sink
from bench.workload import Leftovers
from common.messaging import topology
from devtools.mailsink import free_port
from devtools.stack import names_for
from tests.integration.conftest import RABBITMQ_URL, REDIS_URL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def queue_exists(name: str) -> bool:
    return _declared(lambda channel: channel.queue_declare(name, passive=True))


def exchange_exists(name: str) -> bool:
    return _declared(lambda channel: channel.exchange_declare(name, passive=True))


def _declared(declare) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        declare(connection.channel())
        return True
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404
        return False
    finally:
        if connection.is_open:
            connection.close()


def every_queue_of(work_queues: list[str]) -> list[str]:
    names = []
    for name in work_queues:
        queue = topology.WorkQueue(name)
        names += [queue.name, queue.dead_letter_queue, *queue.retry_queues]
    return names


def redis_keys(prefixes: list[str]) -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return [key for prefix in prefixes for key in client.scan_iter(match=f"{prefix}:*")]
    finally:
        client.close()


@pytest.fixture
def bench(tmp_path, monkeypatch):
    monkeypatch.setenv("RABBITMQ_URL", RABBITMQ_URL)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    bench = compare.Bench(compare.bench_settings(), tmp_path)
    yield bench
    bench.remove_leftovers()


@pytest.fixture(scope="module")
def sink():
    sink = smtp_sink.CountingSink().start()
    yield sink
    sink.stop()


@pytest.mark.parametrize("system", [compare.PROJECT, compare.RAW], ids=["project", "raw"])
def test_a_drain_delivers_every_message_and_leaves_nothing_behind(bench, sink, system):
    # Enough mails for the window to span many of the kernel's 10 ms CPU-accounting ticks: 30 took 21 ms
    # on a fast machine, and the worker's CPU read 0 between two ticks.
    run = compare.drain(bench, system, sink, count=300, timeout=60)

    assert run.complete, run
    assert run.window_mails > 0 and run.window_seconds > 0 and run.cpu_seconds > 0
    assert run.peak_rss_bytes > 10 * 2**20
    [leftovers] = bench.leftovers
    # Every work queue of the topology, the webhook dispatcher's included, whether or not this run declared it.
    assert sorted(name.rsplit(".", 1)[1] for name in leftovers.work_queues) == [
        "account_confirmed",
        "account_creation",
        "account_notifications",
        "confirm_email_code",
        "webhooks",
    ]
    assert [name for name in every_queue_of(leftovers.work_queues) if queue_exists(name)] == []
    assert len(leftovers.exchanges) == 1
    assert [name for name in leftovers.exchanges if exchange_exists(name)] == []
    assert redis_keys(leftovers.redis_prefixes) == []


def children() -> set[int]:
    return {process.pid for process in psutil.Process().children(recursive=True)}


def test_the_confirm_part_answers_every_code_as_it_calls_for_and_leaves_nothing_behind(bench):
    before = children()
    outcome = confirm_latency.measure_confirm(
        bench.settings, users=4, wrong_codes=2, log_dir=bench.log_dir / "confirm", leftovers=bench.leftovers
    )

    run = outcome.run
    assert run.unexpected == 0
    assert len(run.confirm) == len(run.healthz) == len(run.rpc) == 4 * 3
    assert children() - before == set()  # the services, the echo consumer and the sink
    assert outcome.auth_peak_rss_bytes > 10 * 2**20 and outcome.worker_peak_rss_bytes > 10 * 2**20
    [leftovers] = bench.leftovers
    assert [name for name in every_queue_of(leftovers.work_queues) if queue_exists(name)] == []
    assert [name for name in leftovers.plain_queues if queue_exists(name)] == []  # the raw RPC's
    assert redis_keys(leftovers.redis_prefixes) == []


def test_the_confirm_cpu_accounting_reads_every_process_and_leaves_nothing_behind(bench):
    before = children()
    blocks = confirm_cpu.measure(bench.settings, users=3, rounds=3, log_dir=bench.log_dir, leftovers=bench.leftovers)

    assert {kind: len(block.seconds) for kind, block in blocks.items()} == {
        "/healthz": 9,
        "raw RPC": 9,
        "confirm, wrong code": 18,
        "confirm, right code": 9,
    }
    healthz, rpc = blocks["/healthz"], blocks["raw RPC"]
    # Each process's CPU is found where its work is: the idle ones' background ticks weigh less.
    assert rpc.per_request_ms("echo") > healthz.per_request_ms("echo")
    assert healthz.per_request_ms("auth") > rpc.per_request_ms("auth")
    for kind in ("confirm, wrong code", "confirm, right code"):
        assert blocks[kind].per_request_ms("auth") > healthz.per_request_ms("auth")
        assert blocks[kind].per_request_ms("worker") > healthz.per_request_ms("worker")
    assert confirm_cpu.report(blocks).count("\n") == 1 + len(blocks)
    assert children() - before == set()
    [leftovers] = bench.leftovers
    assert [name for name in every_queue_of(leftovers.work_queues) if queue_exists(name)] == []
    assert [name for name in leftovers.plain_queues if queue_exists(name)] == []
    assert redis_keys(leftovers.redis_prefixes) == []


def test_an_interrupted_benchmark_stops_its_processes_and_removes_its_queues():
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.compare", "--parts", "tls", "--tls-messages", "5000", "--reps", "1"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "RABBITMQ_URL": RABBITMQ_URL, "REDIS_URL": REDIS_URL},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a failing test can stop the whole tree
    )
    tag = None
    try:
        log_dir = Path(re.search(r"logs of every process in (\S+)", process.stderr.readline()).group(1))
        worker_log = log_dir / "run01-email_service.log"
        deadline = time.monotonic() + 60
        while tag is None or _depth(names_for(tag)["ACCOUNT_CREATION_QUEUE"]) >= 5000:
            assert time.monotonic() < deadline, "the worker never started draining"
            tag = _run_tag(worker_log)
            time.sleep(0.1)
        # Interrupted in the middle of the drain.
        worker_pid = _pid_of_child(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if tag is not None:
                _remove_run(tag)
    run = Leftovers(RABBITMQ_URL, REDIS_URL)
    run.add_names(names_for(tag))
    assert [name for name in every_queue_of(run.work_queues) if queue_exists(name)] == []
    assert redis_keys(run.redis_prefixes) == []
    assert not Path(f"/proc/{worker_pid}").exists(), "the worker outlived the benchmark"


def _depth(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        if connection.is_open:
            connection.close()


def _run_tag(worker_log: Path) -> str | None:
    """The tag of the run's queue names, once the worker has logged one."""
    if not worker_log.exists():
        return None
    found = re.search(r'"queue": "([^"]+)\.account_creation"', worker_log.read_text())
    return found.group(1) if found else None


def _remove_run(tag: str) -> None:
    leftovers = Leftovers(RABBITMQ_URL, REDIS_URL)
    leftovers.add_names(names_for(tag))
    leftovers.remove()


def _pid_of_child(parent: int) -> int:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in children:
        if "email_service" in Path(f"/proc/{pid}/cmdline").read_text():
            return int(pid)
    raise AssertionError(f"no worker among {children}")


def test_a_worker_whose_metrics_port_was_taken_is_started_again(bench, sink, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], free_port()])
        monkeypatch.setattr(compare, "free_ports", lambda count: next(ports))
        # One process: the bench, not the worker's supervisor, is what starts it again on another port.
        run = compare.drain(bench, compare.PROJECT_ONE_PROCESS, sink, count=10, timeout=60)
    assert run.complete, run
    [log] = bench.log_dir.glob("run*-email_service.log")
    assert log.read_text().count("cannot serve metrics") == 1
