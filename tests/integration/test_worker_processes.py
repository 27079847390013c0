"""``python -m email_service`` supervises WORKER_PROCESSES workers: each serves its own port, a dead one
is started again, SIGTERM stops them all with exit 0, and a supervisor killed outright takes them along."""

from __future__ import annotations

import signal

import psutil
import pytest

from devtools.stack import http_json
from tests.waiting import eventually

pytestmark = pytest.mark.integration

WAIT_SECONDS = 30.0


def children_of(pid: int) -> list[psutil.Process]:
    """The supervisor's live worker processes (one killed but not yet reaped is not among them)."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if "email_service" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:  # ZombieProcess included: killed, not reaped yet
            continue
    return found


def wait_until(condition, what: str):
    return eventually(condition, what, WAIT_SECONDS, every=0.1)


def answers(port: int) -> bool:
    try:
        return http_json("GET", f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200
    except OSError:
        return False


def test_the_supervisor_runs_its_processes_restarts_a_dead_one_and_stops_them_all(start_stack, unique_email):
    stack = start_stack(WORKER_PROCESSES="2")
    supervisor = stack.worker.started.pid
    port = int(stack.env["WORKER_METRICS_PORT"])
    first, second = wait_until(lambda: sorted(children_of(supervisor), key=lambda p: p.pid), "two worker processes")
    wait_until(lambda: answers(port) and answers(port + 1), "both processes answer on their own port")

    second.kill()
    replaced = wait_until(
        lambda: [p for p in children_of(supervisor) if p.pid not in (first.pid, second.pid)], "a new process"
    )
    wait_until(lambda: answers(port + 1), "the new process answers on the port of the one it replaced")
    email = unique_email("processes")
    assert stack.call("POST", "/auth/register", {"email": email, "password": "correct horse battery"})[0] == 201
    assert stack.sink.wait_for(email, timeout=15)

    stack.worker.started.send_signal(signal.SIGTERM)
    assert stack.worker.started.wait(WAIT_SECONDS) == 0
    assert not first.is_running() and not replaced[0].is_running()
    assert "a worker process exited, starting it again" in stack.worker.log_text()


def test_a_supervisor_killed_outright_takes_its_processes_along(start_stack):
    stack = start_stack(WORKER_PROCESSES="2")
    supervisor = stack.worker.started.pid
    children = wait_until(lambda: len(children_of(supervisor)) == 2 and children_of(supervisor), "two processes")
    stack.worker.kill()
    wait_until(lambda: not any(child.is_running() and child.status() != "zombie" for child in children), "none left")
