"""Break something real in the middle of a burst of registrations, then check every one of them.

What each test asserts about every registration that got a 201:
- the last code emailed to the address confirms the account (200 verified)
  and the password then logs in: nothing lost;
- every email to the address carries that same code (one usable code), except
  in the Redis test, where an address whose pending code Redis lost is
  recovered by one resend, and only then gets a second, different code;
- nothing ended in a dead-letter queue (the malformed-message test: exactly
  the malformed ones did).
A repeated email with the same code is allowed only after the worker was
killed between handing a mail to SMTP and recording that it had; where no
process dies (broker, SMTP, malformed) the tests assert no address got two.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pika

from common.messaging.messages import CodeRequested, CodeSubmitted, CodeVerified
from devtools.stack import http_json
from tests.faults.harness import FaultRun

BURST = 200
OUTAGE_SECONDS = 20.0
# A confirm or resend while the broker is down must be answered within this.
BROKER_DOWN_ANSWER_BOUND_SECONDS = 10.0


def assert_every_registration_recovered(run: FaultRun, outcome, addresses: list[str]) -> None:
    assert len(addresses) == BURST, f"refused registrations: {dict(run.refused)}"
    assert not run.refused, f"registrations not answered 201: {dict(run.refused)}"
    assert not outcome.lost, f"{len(outcome.lost)} registrations without a working code\n{run.log_tails()}"
    assert outcome.delivered == set(addresses)


def test_worker_killed_mid_burst_and_restarted(fault_run, record_figures):
    run = fault_run()
    # The kill lands while the first half is still arriving: the worker mails as fast as auth
    # answers, so waiting for the half's 201s first would leave it nothing in hand to lose.
    with ThreadPoolExecutor(1) as background:
        arriving = background.submit(run.register, BURST // 2)
        mailed_at_kill = run.wait_for_mails(BURST // 8, timeout=30)
        run.stack.worker.kill()  # SIGKILL: messages in hand are neither acked nor recorded
        first = arriving.result()
    second = run.register(BURST // 2)
    run.stack.worker.start()
    addresses = first + second
    run.settle(addresses)

    outcome = run.judge(addresses)
    dead = sum(run.dead_letters().values())
    figures = outcome.figures("worker SIGKILL", run.elapsed, dead)
    figures["mailed at kill"] = mailed_at_kill
    record_figures(figures)

    assert mailed_at_kill < len(first), "the worker was not killed mid-burst"
    assert_every_registration_recovered(run, outcome, addresses)
    assert all(count == 1 for count in outcome.distinct_codes.values())
    assert dead == 0


def test_rabbitmq_stopped_for_20_seconds_mid_burst(fault_run, private_rabbitmq, record_figures):
    run = fault_run()
    first = run.register(BURST // 2)
    mailed_at_stop = len(run.stack.sink.all())
    private_rabbitmq.stop()
    outage_started = time.monotonic()
    wait_until_not_ready(run)

    probe = first[0]
    confirm, confirm_seconds = timed(run, "POST", "/auth/confirm", {"email": probe, "code": "000000"})
    resend, resend_seconds = timed(run, "POST", "/auth/resend-code", {"email": probe})
    second = run.register(BURST // 2, over_seconds=OUTAGE_SECONDS / 2)  # auth keeps answering 201
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
    private_rabbitmq.start()
    addresses = first + second
    run.settle(addresses)

    outcome = run.judge(addresses)
    dead = sum(run.dead_letters().values())
    figures = outcome.figures("RabbitMQ down 20 s", run.elapsed, dead)
    figures["mailed at stop"] = mailed_at_stop
    figures["503 answered within (s)"] = round(max(confirm_seconds, resend_seconds), 3)
    record_figures(figures)

    for status, headers, body in (confirm, resend):
        assert status == 503
        assert body["error"] == "service_unavailable"
        assert int(headers["Retry-After"]) > 0
    assert max(confirm_seconds, resend_seconds) < BROKER_DOWN_ANSWER_BOUND_SECONDS
    assert_every_registration_recovered(run, outcome, addresses)
    assert not outcome.duplicated
    assert dead == 0


def test_smtp_refusing_for_20_seconds(fault_run, record_figures):
    run = fault_run()
    first = run.register(BURST // 2)
    run.stack.sink.refusing = True
    refusing_since = time.monotonic()
    second = run.register(BURST // 2, over_seconds=OUTAGE_SECONDS / 2)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - refusing_since)))
    run.stack.sink.refusing = False
    addresses = first + second
    run.settle(addresses)

    outcome = run.judge(addresses)
    dead = sum(run.dead_letters().values())
    figures = outcome.figures("SMTP 451 for 20 s", run.elapsed, dead)
    figures["refused tries"] = run.stack.sink.refused
    record_figures(figures)

    assert_every_registration_recovered(run, outcome, addresses)
    assert not outcome.duplicated
    assert dead == 0
    # Retried through the broker's retry ladder, not in a loop: at most one try per rung per message.
    retries = len(run.stack.env["RETRY_DELAYS_SECONDS"].split(","))
    assert 0 < run.stack.sink.refused <= BURST * (1 + retries)
    assert "message parked for retry" in run.stack.worker.log_text()


def test_redis_restarted_mid_burst(fault_run, private_redis, record_figures):
    run = fault_run(RESEND_COOLDOWN_SECONDS="1")
    # Slow mail keeps messages in the worker's hands when Redis goes (it otherwise mails as fast
    # as auth answers). Registering goes on only once Redis is back: auth keeps its cooldowns there.
    run.stack.sink.delay_seconds = (0.2, 0.3)
    first = run.register(BURST // 2)
    mailed_at_crash = run.wait_for_mails(BURST // 5, timeout=30)
    private_redis.crash_and_restart_empty(down_seconds=5)
    run.stack.sink.delay_seconds = None
    second = run.register(BURST // 2)
    addresses = first + second
    run.settle(addresses)

    # Pending codes that Redis lost are lost by design; a resend must recover each such user.
    outcome = run.judge(addresses, recover_expired=True)
    dead = sum(run.dead_letters().values())
    figures = outcome.figures("Redis crash + restart", run.elapsed, dead)
    figures["mailed at crash"] = mailed_at_crash
    figures["repeated without resend"] = len(outcome.duplicated - outcome.resent)
    record_figures(figures)

    assert mailed_at_crash < len(first), "Redis did not go mid-burst"
    assert_every_registration_recovered(run, outcome, addresses)
    assert not outcome.resent & set(second), "registered after the restart, yet needed a resend"
    for address in addresses:
        allowed = 2 if address in outcome.resent else 1
        assert outcome.distinct_codes[address] <= allowed, address
    assert dead == 0
    worker_log = run.stack.worker.log_text()
    assert "a store is unavailable, message held" in worker_log
    assert "message parked for retry" not in worker_log  # the outage did not spend the retry ladder


def test_malformed_messages_are_dead_lettered_and_good_ones_unaffected(fault_run, record_figures):
    run = fault_run()
    queues = run.names
    bad = malformed_messages(queues)
    addresses: list[str] = []
    connection = pika.BlockingConnection(pika.URLParameters(run.rabbitmq_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        chunk = len(bad) // 4
        for start in range(0, len(bad), chunk):
            for queue, body, properties in bad[start : start + chunk]:
                channel.basic_publish("", queue, body, properties, mandatory=True)
            addresses += run.register(BURST // 4)
    finally:
        connection.close()
    run.settle(addresses)

    outcome = run.judge(addresses)
    dead = run.dead_letters()
    record_figures(outcome.figures("1,000 malformed mixed in", run.elapsed, sum(dead.values())))

    expected = {queue: sum(1 for target, _, _ in bad if target == queue) for queue in run.work_queues}
    assert len(bad) == 1000
    assert dead == expected
    assert_every_registration_recovered(run, outcome, addresses)
    assert not outcome.duplicated
    assert run.stack.worker.process.poll() is None, "the worker died of a bad message"
    assert run.stack.auth.process.poll() is None, "the auth service died of a bad message"


def malformed_messages(queues: dict[str, str]) -> list[tuple[str, bytes, pika.BasicProperties]]:
    """1,000 messages no handler can use, spread over all three work queues."""
    creation, confirm, confirmed = (
        queues["ACCOUNT_CREATION_QUEUE"],
        queues["CONFIRM_EMAIL_CODE_QUEUE"],
        queues["ACCOUNT_CONFIRMED_QUEUE"],
    )
    registered = {
        "type": CodeRequested.TYPE,
        "purpose": "verify_email",
        "user_id": "u1",
        "email": "x@example.com",
        "requested_at": 1,
    }
    submitted = {"type": CodeSubmitted.TYPE, "purpose": "verify_email", "email": "x@example.com"}
    kinds = [
        (creation, b"\xff\xfe not utf-8"),
        (creation, b"not json at all"),
        (creation, b"[1, 2, 3]"),
        (creation, _json({"user_id": "u1", "email": "x@example.com"})),
        (creation, _json({**registered, "type": "bogus.type"})),
        (creation, _json({k: v for k, v in registered.items() if k != "user_id"})),
        (creation, _json({**registered, "email": 12345})),
        (creation, _json({**registered, "requested_at": "yesterday"})),
        (creation, _json({**registered, "email": "x" * 400})),
        (creation, _json({**registered, "purpose": "sign_out"})),
        (creation, _json({k: v for k, v in registered.items() if k != "purpose"})),
        (confirm, _json(submitted)),
        (confirm, _json({**submitted, "code": 123456})),
        (confirm, _json({**submitted, "code": "123456", "link_token": "t" * 43})),
        (confirm, _json({**registered, "code": "1"})),
        (confirm, b"{"),
        (confirmed, _json({"type": CodeVerified.TYPE})),
        (confirmed, _json({"type": "bogus.type", "user_id": "u1"})),
        (confirmed, b"null"),
    ]
    result = []
    for number in range(1000):
        queue, body = kinds[number % len(kinds)]
        # Every 50th carries no message_id at all: that alone makes it malformed.
        message_id = None if number % 50 == 49 else f"malformed-{number}"
        if message_id is None:
            body = _json(registered)
            queue = creation
        result.append((queue, body, pika.BasicProperties(message_id=message_id, delivery_mode=2)))
    return result


def _json(value) -> bytes:
    return json.dumps(value).encode()


def wait_until_not_ready(run: FaultRun, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, _ = run.stack.call("GET", "/readyz")
        if status == 503:
            return
        time.sleep(0.1)
    raise AssertionError("auth still reports ready with the broker stopped")


def timed(run: FaultRun, method: str, path: str, body: dict):
    started = time.monotonic()
    answer = http_json(method, f"{run.stack.base_url}{path}", body)
    return answer, time.monotonic() - started
