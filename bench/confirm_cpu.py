"""What a confirm costs the machine in CPU, process by process, against its two round trips.

    python -m bench.confirm_cpu [--users 300] [--rounds 3]

One stack as the confirm part of ``make bench`` runs it (bench/confirm_latency.py:
auth on the indexed stand-in, the worker, mail to the benchmark's sink in a
process of its own), and the raw RPC's echo consumer beside it. In each round,
one request at a time on one kept connection, four blocks: ``--users``
``/healthz`` requests, ``--users`` raw RPCs, two wrong codes for each of
``--users`` users, then each user's right code (the three kinds take turns
at going first, round by round). Around each block the CPU time
of every process involved is read per thread (``/proc/<pid>/task/*/schedstat``,
in nanoseconds); a pause before and after lets the work a request leaves
behind (a verified confirm's welcome mail and event) finish inside its own
block. Over the rounds, a machine whose speed drifts weighs on all of them alike.

The table gives the p50 of each kind of request and the CPU it cost each
process: auth, the worker (supervisor and processes), the echo consumer,
RabbitMQ and Redis (whole servers: anything else they serve is counted too),
this process (the client) and the sink.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.auth_peers import infra_processes
from bench.compare import bench_settings
from bench.confirm_latency import rig, wrong_code
from bench.processes import process_tree
from bench.workload import Leftovers

PAUSE_SECONDS = 0.3


@dataclass
class Block:
    """What one kind of request cost over every block of it: samples, and CPU nanoseconds by process."""

    seconds: list[float] = field(default_factory=list)
    cpu_ns: dict[str, int] = field(default_factory=dict)

    def per_request_ms(self, name: str) -> float:
        return self.cpu_ns.get(name, 0) / len(self.seconds) / 1e6


def thread_cpu_ns(pids: Iterable[int]) -> int:
    """CPU time of every thread of the processes; a thread that ended takes its time with it."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue
    return total


def measure(
    settings: dict[str, str], users: int, rounds: int, log_dir: Path, leftovers: list[Leftovers]
) -> dict[str, Block]:
    """The blocks on a fresh stack (bench/confirm_latency.py's ``rig``, with every round's users)."""
    with rig(settings, users * rounds, log_dir, leftovers) as ready:
        processes = {
            "auth": _pids(process_tree(ready.stack.auth.started.pid)),
            "worker": _pids(process_tree(ready.stack.worker.started.pid)),
            "echo": _pids(process_tree(ready.echo.started.pid)),
            "RabbitMQ": _pids(infra_processes([settings["RABBITMQ_URL"]])),
            "Redis": _pids(infra_processes([settings["REDIS_URL"]])),
            "client": [os.getpid()],
            "sink": [ready.sink.pid] if ready.sink.pid else [],
        }
        unseen = [name for name, pids in processes.items() if not pids]
        if unseen:
            raise RuntimeError(f"no process found for {', '.join(unseen)}")
        blocks: dict[str, Block] = {}

        def run_block(kind: str, requests: list[Callable[[], float]]) -> None:
            time.sleep(PAUSE_SECONDS)
            before = {name: thread_cpu_ns(pids) for name, pids in processes.items()}
            seconds = [request() for request in requests]
            time.sleep(PAUSE_SECONDS)
            block = blocks.setdefault(kind, Block())
            block.seconds += seconds
            for name, pids in processes.items():
                block.cpu_ns[name] = block.cpu_ns.get(name, 0) + thread_cpu_ns(pids) - before[name]

        def confirm(email: str, code: str, expected: int) -> Callable[[], float]:
            def submit() -> float:
                status, seconds = ready.http.timed("POST", "/auth/confirm", {"email": email, "code": code})
                if status != expected:
                    raise RuntimeError(f"a confirm answered {status} where {expected} was due")
                return seconds

            return submit

        def healthz() -> None:
            run_block("/healthz", [lambda: ready.http.timed("GET", "/healthz")[1]] * users)

        def round_trips() -> None:
            run_block("raw RPC", [lambda: ready.rpc.call(ready.rpc_request)] * users)

        def confirms(these: list[tuple[str, str]]) -> None:
            run_block("confirm, wrong code", [confirm(email, wrong_code(code), 400) for email, code in these] * 2)
            run_block("confirm, right code", [confirm(email, code, 200) for email, code in these])

        for number in range(rounds):
            these = ready.accounts[number * users : (number + 1) * users]
            order: list[Callable[[], None]] = [healthz, round_trips, functools.partial(confirms, these)]
            for measure_kind in order[number % 3 :] + order[: number % 3]:
                measure_kind()
        return blocks


def report(blocks: dict[str, Block]) -> str:
    names = list(next(iter(blocks.values())).cpu_ns)
    lines = [
        "| request | p50 ms | " + " | ".join(f"{name} CPU ms" for name in names) + " | every process |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for kind, block in blocks.items():
        costs = [block.per_request_ms(name) for name in names]
        lines.append(
            f"| {kind} | {statistics.median(block.seconds) * 1000:.2f} | "
            + " | ".join(f"{cost:.2f}" for cost in costs)
            + f" | {sum(costs):.2f} |"
        )
    return "\n".join(lines)


def _pids(processes: Iterable[psutil.Process]) -> list[int]:
    return [process.pid for process in processes]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="users a round (each: 2 wrong codes, 1 right)")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-confirm-cpu-"))
    print(f"logs of every process in {log_dir}", file=sys.stderr)
    blocks = measure(bench_settings(), options.users, options.rounds, log_dir, [])
    load = os.getloadavg()[0]
    print(f"{options.rounds} rounds of {options.users} users on {os.cpu_count()} cores, load average {load:.2f} after")
    print(report(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
