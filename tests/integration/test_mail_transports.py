"""Mail that arrives, on the real processes: SMTP (the sink), Amazon SES (moto in server mode on
loopback) and Postmark (a local stand-in of its API) as roads out, failover between them with the
breaker, the retry ladder when every road is down, dead addresses suppressed from refusals and from
the providers' reports, and the lift. No traffic leaves the machine."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import dkim
import pika
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from common.messaging.consumer import publish
from common.messaging.messages import CodeRequested, Purpose
from devtools.mail_providers import FakePostmark, SesStandIn
from devtools.stack import LocalStack
from email_service.adapters.dkim_signer import dns_record
from email_service.adapters.suppressions import REFRESH_SECONDS
from email_service.config import Settings as WorkerSettings
from tests.integration.conftest import RABBITMQ_URL
from tests.integration.test_account_events_flow import OtherService
from tests.observability import metric_samples
from tests.sns import TOPIC, SnsSigner, complaint

SENDER = "no-reply@mail.example.com"
PASSWORD = "correct horse battery"
WEBHOOK_USER, WEBHOOK_PASSWORD = "postmark", "integration-webhook-password-0123"
ONE_PROCESS = {"WORKER_PROCESSES": "1", "MAIL_DEFAULT_SENDER": SENDER}
CODE = re.compile(r"\b\d{6}\b")


@pytest.fixture
def postmark():
    fake = FakePostmark().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def ses():
    stand_in = SesStandIn(SENDER).start()
    yield stand_in
    stand_in.stop()


def postmark_settings(fake: FakePostmark) -> dict[str, str]:
    return {"POSTMARK_API_URL": fake.url, "POSTMARK_SERVER_TOKEN": fake.token}


def wait_until(condition, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def mails(road, email: str, count: int = 1, timeout: float = 20.0):
    return wait_until(
        lambda: (found := road.mails_to(email)) and len(found) >= count and found, f"mail to {email}", timeout
    )


def worker_metrics(stack: LocalStack) -> dict:
    return metric_samples(requests.get(f"{stack.worker_status_url}/metrics", timeout=5).text)


def transport_metric(stack: LocalStack, name: str, transport: str, **labels: str) -> float:
    key = (name, tuple(sorted({"transport": transport, **labels}.items())))
    return worker_metrics(stack).get(key, 0.0)


def register(stack: LocalStack, email: str) -> None:
    status, _, body = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201, body


def verified_token(stack: LocalStack, email: str, road) -> str:
    register(stack, email)
    [mail] = mails(road, email)
    code = CODE.search(mail.text)
    assert code is not None, mail.text
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": code.group(0)})[0] == 200
    status, _, body = stack.call("POST", "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, body
    return body["access_token"]


def deliverable(stack: LocalStack, token: str) -> bool:
    status, _, body = stack.call("GET", "/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
    return body["email_deliverable"]


def forgot(stack: LocalStack, email: str) -> None:
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202


# --- each road on its own ---------------------------------------------------------------------


def test_a_registration_mailed_through_amazon_ses_confirms(start_stack, ses, unique_email):
    stack = start_stack(**ONE_PROCESS, MAIL_TRANSPORTS="ses", **ses.environment)
    email = unique_email()
    token = verified_token(stack, email, ses)
    code_mail, welcome = mails(ses, email, count=2)
    assert b"Auto-Submitted: auto-generated" in code_mail.raw and b"@mail.example.com>" in code_mail.raw
    assert welcome.subject.startswith("Welcome")
    assert deliverable(stack, token)
    assert transport_metric(stack, "mail_transport_sent_total", "ses") == 2
    assert stack.sink.all() == []


def test_a_registration_mailed_through_postmark_confirms_and_an_inactive_recipient_is_suppressed(
    start_stack, postmark, unique_email
):
    stack = start_stack(**ONE_PROCESS, MAIL_TRANSPORTS="postmark,smtp", **postmark_settings(postmark))
    email = unique_email()
    token = verified_token(stack, email, postmark)
    assert postmark.connections == 1  # one kept connection carried both mails
    mails(postmark, email, count=2)  # and the welcome
    postmark.inactive.add(email)
    forgot(stack, email)
    wait_until(lambda: not deliverable(stack, token), "auth to learn the address is undeliverable")
    assert stack.sink.mails_to(email) == []  # a permanent refusal is not tried on the next road
    assert transport_metric(stack, "mail_transport_failed_total", "postmark", kind="recipient") == 1


# --- failover ----------------------------------------------------------------------------------


def test_smtp_refusing_moves_mail_to_the_next_road_the_breaker_opens_then_closes(
    start_stack, postmark, unique_email, tmp_path, note
):
    key = ed25519.Ed25519PrivateKey.generate()
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    stack = start_stack(
        **ONE_PROCESS,
        # One consumer thread: a mail already under way when the third refusal opens the breaker would be
        # refused too and counted a fourth (the thousand-mail test below has the threads and that race).
        WORKER_THREADS="1",
        MAIL_TRANSPORTS="smtp,postmark",
        MAIL_TRANSPORT_FAILURES_TO_OPEN="3",
        # Long enough that the six mails below all meet the open breaker on a loaded machine: a cooldown
        # ending among them would let a trial through, and SMTP, still refusing, would open it again.
        MAIL_TRANSPORT_COOLDOWN_SECONDS="10",
        DKIM_DOMAIN="mail.example.com",
        DKIM_SELECTOR="s1",
        DKIM_PRIVATE_KEY_FILE=str(key_file),
        **postmark_settings(postmark),
    )
    started = time.monotonic()
    timeline: list[str] = []

    def mark(event: str) -> None:
        timeline.append(f"{time.monotonic() - started:.2f}s {event}")

    before = unique_email("before")
    register(stack, before)
    [signed] = mails(stack.sink, before)
    record = dns_record(key_file.read_bytes()).encode()
    assert dkim.verify(signed.raw, dnsfunc=lambda name, timeout=5: record)
    stack.sink.refusal = "421 4.3.2 Service not available, closing transmission channel"
    stack.sink.refusing = True
    mark("SMTP starts answering 421")
    during = [unique_email("during") for _ in range(6)]
    for email in during:
        register(stack, email)
    for email in during:
        mails(postmark, email)
    mark(f"{len(during)} codes delivered by postmark")
    assert transport_metric(stack, "mail_transport_breaker_opened_total", "smtp") == 1
    assert transport_metric(stack, "mail_transport_open", "smtp") == 1
    assert transport_metric(stack, "mail_transport_failed_total", "smtp", kind="transient") == 3
    mark("breaker open after 3 refusals; the other mails skipped SMTP")
    stack.sink.refusing = False
    mark("SMTP accepts again")
    wait_until(lambda: transport_metric(stack, "mail_transport_open", "smtp") == 0, "the cooldown to pass", 20)
    mark("cooldown over")
    after = [unique_email("after") for _ in range(3)]
    # The first mail past the cooldown is SMTP's trial; mails asked while it is under way still skip SMTP.
    # Once it has arrived the breaker is closed, and the rest go by SMTP again.
    register(stack, after[0])
    mails(stack.sink, after[0])
    # Counted as sent once the breaker has closed on it: SMTP's second mail, after the one before the refusals.
    wait_until(lambda: transport_metric(stack, "mail_transport_sent_total", "smtp") == 2, "the trial to close it")
    mark("the trial mail delivered by SMTP, breaker closed")
    for email in after[1:]:
        register(stack, email)
    for email in after[1:]:
        mails(stack.sink, email)
    mark(f"{len(after)} codes delivered by SMTP again")
    assert all(postmark.mails_to(email) == [] for email in (before, *after))
    assert all(stack.sink.mails_to(email) == [] for email in during)
    assert transport_metric(stack, "mail_transport_failed_over_total", "postmark") == len(during)
    note("failover timeline: " + "; ".join(timeline))
    note(f"mails per transport: smtp {len(stack.sink.all())}, postmark {len(postmark.all())}")


def test_with_every_road_down_mail_waits_on_the_retry_ladder_and_none_is_lost(start_stack, postmark, unique_email):
    stack = start_stack(
        **ONE_PROCESS,
        MAIL_TRANSPORTS="smtp,postmark",
        RETRY_DELAYS_SECONDS="1,2,3",
        **postmark_settings(postmark),
    )
    stack.sink.refusing = True
    postmark.failing_status = 503
    emails = [unique_email("waiting") for _ in range(3)]
    for email in emails:
        register(stack, email)
    wait_until(lambda: postmark.requests >= len(emails), "every mail to try both roads")
    assert stack.sink.all() == [] and postmark.all() == []
    postmark.failing_status = None
    for email in emails:
        [mail] = mails(postmark, email, timeout=30)
        assert CODE.search(mail.text)
    time.sleep(1.0)
    assert Counter(mail.recipient for mail in postmark.all()) == dict.fromkeys(emails, 1)


def test_a_thousand_mails_with_smtp_failing_half_way_arrive_exactly_once(start_stack, postmark, note):
    stack = start_stack(
        **ONE_PROCESS,
        MAIL_TRANSPORTS="smtp,postmark",
        MAIL_TRANSPORT_FAILURES_TO_OPEN="3",
        MAIL_TRANSPORT_COOLDOWN_SECONDS="60",
        **postmark_settings(postmark),
    )
    settings = WorkerSettings.from_env(stack.env)
    run = uuid.uuid4().hex[:8]
    addresses = [f"bulk-{run}-{index}@example.com" for index in range(1000)]

    def fail_half_way() -> None:
        # While the queue is still full: mails in the middle of their SMTP exchange meet the 421.
        wait_until(lambda: len(stack.sink.all()) >= 500, "the first half by SMTP", 120)
        stack.sink.refusal = "421 4.3.2 Service not available, closing transmission channel"
        stack.sink.refusing = True

    watcher = threading.Thread(target=fail_half_way)
    watcher.start()
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for index, email in enumerate(addresses):
            request = CodeRequested(Purpose.RESET_PASSWORD, f"u-{run}-{index}", email, time.time())
            message = request.outgoing(message_id=f"{run}-{index}")
            publish(channel, settings.topology, settings.account_creation_queue, message)
    finally:
        connection.close()
    watcher.join()
    wait_until(lambda: len(stack.sink.all()) + len(postmark.all()) >= 1000, "a thousand mails", 120)
    time.sleep(1.0)  # a duplicate would show up now
    delivered = Counter(mail.recipient for mail in (*stack.sink.all(), *postmark.all()))
    assert delivered == dict.fromkeys(addresses, 1)
    by_smtp, by_postmark = len(stack.sink.all()), len(postmark.all())
    assert by_smtp >= 500 and by_postmark >= 1000 - by_smtp
    failed = transport_metric(stack, "mail_transport_failed_total", "smtp", kind="transient")
    note(
        f"1,000 mails, SMTP refusing from about the 500th: smtp {by_smtp}, postmark {by_postmark}, each exactly once "
        f"({failed:.0f} SMTP refusals before its breaker opened)"
    )


# --- dead addresses ------------------------------------------------------------------------------


@pytest.fixture
def reports_stack(start_stack, postmark, tmp_path):
    signer = SnsSigner()
    certificate = tmp_path / "sns.pem"
    certificate.write_bytes(signer.pem)
    stack = start_stack(
        **ONE_PROCESS,
        MAIL_TRANSPORTS="smtp,postmark",
        POSTMARK_WEBHOOK_USERNAME=WEBHOOK_USER,
        POSTMARK_WEBHOOK_PASSWORD=WEBHOOK_PASSWORD,
        SES_SNS_TOPIC_ARNS=TOPIC,
        SNS_TRUSTED_CERTIFICATE_FILE=str(certificate),
        # Codes asked one after the other for one address, as the scenarios need.
        RESEND_COOLDOWN_SECONDS="0",
        **postmark_settings(postmark),
    )
    return stack, signer


def post(stack: LocalStack, path: str, body: bytes, headers: dict) -> int:
    return requests.post(f"{stack.base_url}{path}", data=body, headers=headers, timeout=10).status_code


def lift(stack: LocalStack, email: str) -> str:
    """Lift with the operator's command; returns once every worker process can have seen it (each looks
    at the list's version at most a second apart)."""
    done = subprocess.run(
        [sys.executable, "-m", "email_service", "suppressions", "lift", email],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    time.sleep(REFRESH_SECONDS + 0.2)
    return done.stdout.strip()


def test_a_permanent_refusal_suppresses_the_address_without_failover_until_it_is_lifted(
    reports_stack, postmark, unique_email
):
    stack, _ = reports_stack
    events = OtherService(stack.env["ACCOUNT_EVENTS_EXCHANGE"])
    try:
        email = unique_email("dead")
        token = verified_token(stack, email, stack.sink)
        received = len(stack.sink.mails_to(email))
        stack.sink.dead_mailboxes[email] = "550 5.1.1 <dead>: Recipient address rejected: User unknown"
        forgot(stack, email)
        wait_until(lambda: not deliverable(stack, token), "auth to learn the address is undeliverable")
        undeliverable = [body for body in events.wait_for(3) if body["type"] == "user.email_undeliverable"]
        assert [(body["email"], body["reason"]) for body in undeliverable] == [(email, "refused")]
        assert postmark.mails_to(email) == []  # no failover for a dead mailbox
        del stack.sink.dead_mailboxes[email]
        refused = stack.sink.refused
        forgot(stack, email)
        wait_until(lambda: worker_metrics(stack).get(("emails_suppressed_total", ()), 0) >= 1, "the suppressed mail")
        assert stack.sink.refused == refused and len(stack.sink.mails_to(email)) == received
        assert lift(stack, email) == "lifted"
        wait_until(lambda: deliverable(stack, token), "auth to learn of the lift")
        forgot(stack, email)
        mails(stack.sink, email, count=received + 1)
    finally:
        events.close()


def test_bounce_and_complaint_reports_from_both_providers_suppress_and_forgeries_do_not(
    reports_stack, postmark, unique_email
):
    stack, signer = reports_stack
    bounced, complained = unique_email("bounced"), unique_email("complained")
    tokens = {email: verified_token(stack, email, stack.sink) for email in (bounced, complained)}
    basic = base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()).decode()
    report = json.dumps({"RecordType": "Bounce", "Type": "HardBounce", "Email": bounced, "Inactive": True}).encode()
    json_type = {"Content-Type": "application/json"}
    assert post(stack, "/webhooks/mail/postmark", report, json_type) == 401
    assert post(stack, "/webhooks/mail/postmark", report, {**json_type, "Authorization": f"Basic {basic}"}) == 200
    notification = signer.notification(complaint(complained))
    forged = {**notification, "Message": json.dumps(complaint(bounced))}
    text = {"Content-Type": "text/plain; charset=UTF-8"}
    assert post(stack, "/webhooks/mail/ses", json.dumps(forged).encode(), text) == 403
    assert post(stack, "/webhooks/mail/ses", json.dumps(notification).encode(), text) == 200
    for email in (bounced, complained):
        assert not deliverable(stack, tokens[email])
    before = {email: len(stack.sink.mails_to(email)) for email in tokens}
    for email in tokens:
        forgot(stack, email)
    wait_until(lambda: worker_metrics(stack).get(("emails_suppressed_total", ()), 0) >= 2, "both mails suppressed")
    assert {email: len(stack.sink.mails_to(email)) for email in tokens} == before
    assert all(postmark.mails_to(email) == [] for email in tokens)
    assert lift(stack, complained) == "lifted"
    wait_until(lambda: deliverable(stack, tokens[complained]), "auth to learn of the lift")
    forgot(stack, complained)
    mails(stack.sink, complained, count=before[complained] + 1)
