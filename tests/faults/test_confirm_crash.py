"""A worker killed between replying a verified code and acking the submission: the account ends
verified, exactly once.

The worker replies a verdict before it publishes the durable ``code.verified``
and acks (the user does not wait for that publish). Killed in between, it has
told the request "verified" (which applies the code itself) and left the
submission unacked: the broker gives it to the restarted worker, whose
remembered verdict publishes ``code.verified`` then, and auth's consumer finds
the account already verified and changes nothing.
"""

from __future__ import annotations

import json
import time
import uuid

from devtools.stack import Service
from tests.faults.dying_worker import KILLED_EXIT_CODE
from tests.faults.harness import PASSWORD

WAIT_SECONDS = 60.0


def code_verified_lines(auth_log: str, user_id: str) -> list[dict]:
    lines = []
    for line in auth_log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "code verified" and record.get("user_id") == user_id:
            lines.append(record)
    return lines


def test_a_worker_killed_between_the_reply_and_the_ack_leaves_the_account_verified_once(fault_run, record_figures):
    run = fault_run(WORKER_PROCESSES="1")
    stack = run.stack
    assert stack.worker.stop() == 0
    dying = Service("tests.faults.dying_worker", stack.env, stack.worker.log_path.with_name("dying-worker.log"))
    stack.worker = dying.start()
    stack.wait_ready()

    email = f"confirm-crash-{uuid.uuid4().hex[:12]}@example.com"
    status, _, body = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201
    user_id = body["id"]
    [mail] = stack.sink.wait_for(email, timeout=WAIT_SECONDS)

    status, _, body = stack.call("POST", "/auth/confirm", {"email": email, "code": mail.code})
    assert status == 200 and body["status"] == "verified"  # the reply came before the crash
    assert dying.started.wait(WAIT_SECONDS) == KILLED_EXIT_CODE, "the worker was not killed in the window"
    assert run.can_log_in(email)

    restarted = Service("email_service", stack.env, stack.worker.log_path.with_name("worker-restarted.log"))
    stack.worker = restarted.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and (run.queued() or not code_verified_lines(stack.auth.log_text(), user_id)):
        time.sleep(0.2)
    assert run.queued() == 0, "the submission or its code.verified is still queued"
    dead_lettered = sum(run.dead_letters().values())
    assert dead_lettered == 0
    applied = code_verified_lines(stack.auth.log_text(), user_id)
    # One durable copy, published by the restarted worker; the request had applied the code already.
    assert [record["changed"] for record in applied] == [False], applied
    assert run.can_log_in(email)
    status, _, _ = stack.call("POST", "/auth/confirm", {"email": email, "code": mail.code})
    assert status == 200  # the confirming code is answered again; the account was not changed twice
    record_figures(
        {
            "fault": "worker killed after reply",
            "driven": 1,
            "delivered": 1,
            "lost": 0,
            "duplicated": 0,
            "dead_lettered": dead_lettered,
            "seconds": round(run.elapsed, 1),
        }
    )
