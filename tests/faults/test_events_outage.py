"""RabbitMQ down while account events are produced: none is lost once it is back.

A service of somebody else's has a durable queue bound to ``user.#`` on the
private broker. With the broker stopped, accounts register (``user.registered``)
and confirmed accounts fail to log in (``user.login_failures`` at the warning
threshold) and log in from a new device (``user.login_new_device``): auth
answers as usual and keeps each event in the user's outbox. Once the broker is
back, the relay publishes them: the other service gets every one (at least
once), and the worker mails each notice once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pika

from tests.faults.harness import PASSWORD, FaultRun

BEFORE = 5  # confirmed accounts, whose logins produce events during the outage
DURING = 20  # registrations during the outage
WARNING_THRESHOLD = 3


def drain(url: str, queue: str, expected: int, timeout: float) -> list[dict]:
    """Every message in ``queue`` until ``expected`` distinct events arrived or ``timeout`` passed."""
    bodies: list[dict] = []
    deadline = time.monotonic() + timeout
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        while len({body["event_id"] for body in bodies}) < expected and time.monotonic() < deadline:
            method, _, raw = channel.basic_get(queue, auto_ack=True)
            if method is None:
                connection.sleep(0.1)
                continue
            bodies.append(json.loads(raw))
    finally:
        connection.close()
    return bodies


def confirmed_accounts(run: FaultRun, count: int) -> list[str]:
    addresses = run.register(count)
    run.wait_for_mails(count, timeout=30)
    for address in addresses:
        assert run.confirm_last_code(address) == 200
        status, _, _ = run.stack.call("POST", "/auth/login", {"email": address, "password": PASSWORD})
        assert status == 200  # the first login: its device is the one known
    return addresses


def test_rabbitmq_down_while_events_are_produced_loses_none(fault_run, private_rabbitmq, record_figures):
    run = fault_run(FAILED_LOGIN_WARNING_THRESHOLD=str(WARNING_THRESHOLD), LOCKOUT_THRESHOLD="10")
    queue = f"fault-other-service-{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika.URLParameters(private_rabbitmq.url))
    channel = connection.channel()
    # Durable: it must outlive the broker's restart, as a real subscriber's queue does.
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, run.stack.env["ACCOUNT_EVENTS_EXCHANGE"], routing_key="user.#")
    connection.close()
    try:
        confirmed = confirmed_accounts(run, BEFORE)
        before_outage = len(drain(private_rabbitmq.url, queue, 2 * BEFORE, timeout=30))
        assert before_outage == 2 * BEFORE  # user.registered and user.verified of each

        private_rabbitmq.stop()
        registered = run.register(DURING)
        answers = Counter()
        for address in confirmed:
            for _ in range(WARNING_THRESHOLD):
                status, _, _ = run.stack.call("POST", "/auth/login", {"email": address, "password": "wrong password"})
                answers[status] += 1
            status, _, _ = run.stack.call(
                "POST",
                "/auth/login",
                {"email": address, "password": PASSWORD},
                headers={"User-Agent": "Fault/1.0 (another device)"},
            )
            answers[status] += 1
        private_rabbitmq.start()

        expected = len(registered) + 2 * len(confirmed)
        bodies = drain(private_rabbitmq.url, queue, expected, timeout=120)
        seen = Counter((body["type"], body["email"]) for body in {body["event_id"]: body for body in bodies}.values())
        for address in confirmed:
            run.stack.sink.wait_for(address, count=4, timeout=30)  # code, welcome, warning, new sign-in
        notices = Counter(
            (mail.recipient, mail.subject) for address in confirmed for mail in run.stack.sink.mails_to(address)
        )
        record_figures(
            {
                "fault": "RabbitMQ down, events",
                "driven": expected,
                "delivered": len(seen),
                "lost": expected - len(seen),
                "duplicated": len(bodies) - len(seen),
                "seconds": round(run.elapsed, 1),
            }
        )

        assert len(registered) == DURING and answers == Counter({401: WARNING_THRESHOLD * BEFORE, 200: BEFORE})
        missing = (
            [("user.registered", address) for address in registered if not seen[("user.registered", address)]]
            + [("user.login_failures", address) for address in confirmed if not seen[("user.login_failures", address)]]
            + [("user.login_new_device", a) for a in confirmed if not seen[("user.login_new_device", a)]]
        )
        assert missing == [], f"events lost: {missing}\n{run.log_tails()}"
        assert len(seen) == expected, "no event beyond those caused"
        for address in confirmed:
            assert notices[(address, "Failed sign-in attempts on your account")] == 1
            assert notices[(address, "New sign-in to your account")] == 1
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(private_rabbitmq.url))
        connection.channel().queue_delete(queue)
        connection.close()
