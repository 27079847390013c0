"""``python -m email_service`` with ``WORKER_PROCESSES`` > 1: start that many worker processes and watch them.

One worker process is bound by its GIL (rendering and SMTP/AMQP framing are
Python); processes that share nothing but the broker and Redis are not. Each
child is ``python -m email_service worker --process-index i``: a whole worker
(its own consumers, connections and SMTP connections) that serves its
``/metrics`` and probes on ``WORKER_METRICS_PORT`` + i, so no two collide.

SIGTERM or SIGINT to the supervisor is passed to every child, which finishes
the message in hand and exits; the supervisor exits once they all have (0 if
they all did so cleanly). A child that exits on its own is started again, at
most ``MAX_RESTARTS`` times in ``RESTART_WINDOW_SECONDS``; past that the
supervisor stops the others and exits 1, so that a worker that cannot run
(a wrong setting, a topology it may not declare) shows instead of looping.
A child dies with the supervisor (``PR_SET_PDEATHSIG``): a supervisor killed
outright leaves no orphan consuming behind it.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

from common.stopping import stop_on_signals
from email_service.config import Settings

log = logging.getLogger(__name__)

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
POLL_SECONDS = 0.2
# A child's own grace (worker.SHUTDOWN_GRACE_SECONDS) and a little more.
CHILD_GRACE_SECONDS = 10.0


def child_command(index: int) -> list[str]:
    return [
        *[sys.executable, "-m", "email_service", "worker"],
        *["--process-index", str(index), "--supervisor-pid", str(os.getpid())],
    ]


def run(settings: Settings, command: Callable[[int], list[str]] = child_command) -> int:
    stop = stop_on_signals()
    count = settings.worker_processes
    children = {index: _start(command(index)) for index in range(count)}
    log.info("worker processes started", extra={"processes": count, "pids": [c.pid for c in children.values()]})
    restarts: collections.deque[float] = collections.deque()
    exit_code = 0
    while not stop.wait(POLL_SECONDS):
        for index, child in list(children.items()):
            status = child.poll()
            if status is None:
                continue
            now = time.monotonic()
            while restarts and now - restarts[0] > RESTART_WINDOW_SECONDS:
                restarts.popleft()
            if len(restarts) >= MAX_RESTARTS:
                log.error(
                    "a worker process keeps exiting, shutting down",
                    extra={"process_index": index, "exit_code": status, "restarts": len(restarts)},
                )
                exit_code = 1
                stop.set()
                break
            restarts.append(now)
            log.error("a worker process exited, starting it again", extra={"process_index": index, "exit_code": status})
            children[index] = _start(command(index))
    return max(exit_code, _stop_all(children.values()))


def _start(argv: list[str]) -> subprocess.Popen:
    # Our own interpreter and module with numbers we made: no outside input reaches the command.
    return subprocess.Popen(argv)  # noqa: S603


def _stop_all(children: Iterable[subprocess.Popen]) -> int:
    children = list(children)
    running = [child for child in children if child.poll() is None]
    for child in running:
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_GRACE_SECONDS
    worst = 0
    for child in children:
        try:
            status = child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("a worker process did not stop in time, killed", extra={"pid": child.pid})
            child.kill()
            status = child.wait()
        worst = max(worst, 0 if status in (0, None) else 1)
    log.info("worker processes stopped")
    return worst


def die_with_parent(parent_pid: int) -> None:
    """In a child: be killed when the supervisor dies, as it would be in one process (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child outlives a killed supervisor
        return
    if os.getppid() != parent_pid:  # the supervisor died before the request above
        os._exit(1)
