"""Resend and forgot answer a known address without waiting on the broker, as they answer an unknown one
(docs/security.md, "Resend timing"; forgot since it shares resend's stored requests).

The time of a 202 must not tell whether an address has a pending account. The
clearest difference was the broker: the pending path published the new code
request and waited for the publisher confirm, the unknown path did not. With
the private broker frozen (SIGSTOP: its connections stay open, no confirm ever
comes), a request that still publishes on its own thread waits the whole
``PUBLISH_TIMEOUT_SECONDS``; one that leaves publishing to the background
answers at once, whichever address it is for. ``bench/resend_timing.py``
measures the paths in normal operation.
"""

from __future__ import annotations

import time
import uuid

PUBLISH_TIMEOUT_SECONDS = 8.0
# Far below the publish timeout: an answer within this did not wait for the broker.
ANSWER_BOUND_SECONDS = 2.0


def test_resend_for_a_pending_address_does_not_wait_for_the_broker(fault_run, private_rabbitmq):
    run = fault_run(PUBLISH_TIMEOUT_SECONDS=str(PUBLISH_TIMEOUT_SECONDS), RESEND_COOLDOWN_SECONDS="1")
    [pending] = run.register(1)
    assert len(run.stack.sink.wait_for(pending, count=1, timeout=15)) == 1
    unknown = f"fault-{uuid.uuid4().hex[:12]}@example.com"
    time.sleep(1.1)  # the registration's cooldown runs out

    answers = {}
    with private_rabbitmq.frozen():
        for address in (unknown, pending):
            started = time.monotonic()
            status, _, _ = run.stack.call("POST", "/auth/resend-code", {"email": address})
            answers[address] = (status, time.monotonic() - started)

    assert answers[unknown][0] == answers[pending][0] == 202
    assert answers[unknown][1] < ANSWER_BOUND_SECONDS
    assert answers[pending][1] < ANSWER_BOUND_SECONDS, f"the pending address waited {answers[pending][1]:.1f} s"
    # Once the broker answers again, the new code goes out all the same.
    mails = run.stack.sink.wait_for(pending, count=2, timeout=60)
    assert len(mails) == 2
    assert run.stack.call("POST", "/auth/confirm", {"email": pending, "code": mails[-1].code})[0] == 200
    assert run.stack.sink.mails_to(unknown) == []


def test_forgot_for_known_addresses_does_not_wait_for_the_broker(fault_run, private_rabbitmq):
    run = fault_run(PUBLISH_TIMEOUT_SECONDS=str(PUBLISH_TIMEOUT_SECONDS), RESEND_COOLDOWN_SECONDS="1")
    confirmed, pending = run.register(2)
    for address in (confirmed, pending):
        assert len(run.stack.sink.wait_for(address, count=1, timeout=15)) == 1
    assert run.confirm_last_code(confirmed) == 200
    unknown = f"fault-{uuid.uuid4().hex[:12]}@example.com"

    answers = {}
    with private_rabbitmq.frozen():
        for address in (unknown, confirmed, pending):
            started = time.monotonic()
            status, _, _ = run.stack.call("POST", "/auth/password/forgot", {"email": address})
            answers[address] = (status, time.monotonic() - started)

    assert {status for status, _ in answers.values()} == {202}
    for address, (_, took) in answers.items():
        assert took < ANSWER_BOUND_SECONDS, f"forgot for {address} waited {took:.1f} s"
    # Once the broker answers again, the reset codes go out to the known addresses, none to the unknown one.
    # The confirmed address also got the welcome of its confirmation.
    for address, count in ((confirmed, 3), (pending, 2)):
        assert len(run.stack.sink.wait_for(address, count=count, timeout=60)) == count
        assert [mail.subject for mail in run.stack.sink.mails_to(address)].count("Reset your password") == 1
    assert run.stack.sink.mails_to(unknown) == []
