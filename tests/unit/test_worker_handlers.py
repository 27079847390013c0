"""The worker's handlers on fakes: what is stored, mailed, published, and acked."""

from __future__ import annotations

import re

import fakeredis
import pytest

from common.messaging import messages
from common.messaging.consumer import Outcome
from common.messaging.envelope import Outgoing
from email_service import bootstrap
from email_service.adapters.pending_store import RedisPendingRegistrations
from email_service.config import Settings
from email_service.ports import PermanentMailError, TransientMailError
from tests.fakes import InMemoryBroker, RecordingMailer, as_delivered
from tests.unit.conftest import BASE_ENV, Clock

EMAIL = "a@example.com"


class Worker:
    def __init__(self, env=None):
        self.settings = Settings.from_env({**BASE_ENV, **(env or {})})
        self.store = RedisPendingRegistrations(fakeredis.FakeRedis(), "test")
        self.mailer = RecordingMailer()
        self.clock = Clock(10_000.0)
        self.handlers = bootstrap.build_handlers(self.settings, store=self.store, mailer=self.mailer, clock=self.clock)
        self.broker = InMemoryBroker()

    def request_code(self, message_id="m1", requested_at=None, **body):
        message = Outgoing(
            type=messages.ACCOUNT_REGISTERED,
            body={"user_id": "u1", "email": EMAIL, "name": "Ada", "requested_at": requested_at or self.clock(), **body},
            message_id=message_id,
        )
        return self.handlers.on_code_requested(as_delivered(message), self.broker)

    def submit(self, code, message_id="s1"):
        message = Outgoing(
            type=messages.EMAIL_CODE_SUBMITTED,
            body={"email": EMAIL, "code": code},
            message_id=message_id,
            reply_to="reply-here",
            correlation_id=f"corr-{message_id}",
        )
        return self.handlers.on_code_submitted(as_delivered(message), self.broker)


@pytest.fixture
def worker():
    return Worker()


def test_a_code_request_stores_the_registration_and_mails_the_code(worker):
    assert worker.request_code().outcome is Outcome.ACK
    [mail] = worker.mailer.sent
    assert mail["email"] == EMAIL and mail["name"] == "Ada" and mail["validity"] == "10 minutes"
    pending = worker.store.get(EMAIL)
    assert pending.user_id == "u1" and pending.mail_sent and pending.attempts == 0


def test_a_redelivered_request_does_not_send_a_second_code(worker):
    worker.request_code(message_id="m1")
    worker.request_code(message_id="m1")
    assert len(worker.mailer.sent) == 1
    assert worker.submit(worker.mailer.sent[0]["code"]).outcome is Outcome.ACK


def test_an_older_request_does_not_void_a_newer_code(worker):
    worker.request_code(message_id="new", requested_at=200.0)
    worker.request_code(message_id="old", requested_at=100.0)
    assert len(worker.mailer.sent) == 1


def test_a_request_whose_mail_failed_sends_a_fresh_code_on_redelivery(worker):
    worker.mailer.fail_with = TransientMailError("timeout")
    assert worker.request_code(message_id="m1").outcome is Outcome.RETRY
    worker.mailer.fail_with = None
    assert worker.request_code(message_id="m1").outcome is Outcome.ACK
    assert len(worker.mailer.sent) == 1


def test_a_permanent_mail_failure_is_dead_lettered(worker):
    worker.mailer.fail_with = PermanentMailError("550 no such user")
    result = worker.request_code()
    assert result.outcome is Outcome.DEAD_LETTER
    assert "550" in result.reason


def test_codes_per_hour_are_capped(worker):
    for index in range(5):
        worker.request_code(message_id=f"m{index}", requested_at=float(index + 1))
    worker.request_code(message_id="m5", requested_at=10.0)
    assert len(worker.mailer.sent) == 5
    worker.clock.advance(3601)
    worker.request_code(message_id="m6", requested_at=20.0)
    assert len(worker.mailer.sent) == 6


@pytest.mark.parametrize(
    "body",
    [
        {"email": EMAIL, "name": "x", "requested_at": 1.0},
        {"user_id": "u1", "name": "x", "requested_at": 1.0},
        {"user_id": "u1", "email": 5, "requested_at": 1.0},
        {"user_id": "u1", "email": EMAIL, "requested_at": "yesterday"},
        {"user_id": "u1", "email": EMAIL, "name": ["x"], "requested_at": 1.0},
    ],
)
def test_a_malformed_code_request_is_dead_lettered_without_mail(body):
    worker = Worker()
    message = Outgoing(type=messages.ACCOUNT_REGISTERED, body=body)
    assert worker.handlers.on_code_requested(as_delivered(message), worker.broker).outcome is Outcome.DEAD_LETTER
    assert worker.mailer.sent == []


def test_the_right_code_confirms_replies_and_publishes_once(worker):
    worker.request_code()
    code = worker.mailer.sent[0]["code"]
    assert worker.submit(code).outcome is Outcome.ACK
    [confirmed] = worker.broker.sent_to(worker.settings.account_confirmed_queue)
    assert confirmed.body == {"user_id": "u1", "email": EMAIL}
    assert worker.store.get(EMAIL) is None


def test_the_verdict_is_replied_to_the_reply_address(worker):
    replies = []
    worker.broker.reply = lambda reply_to, message: replies.append((reply_to, message))
    worker.request_code()
    worker.submit("000000" if worker.mailer.sent[0]["code"] != "000000" else "111111")
    [(reply_to, reply)] = replies
    assert reply_to == "reply-here"
    assert reply.correlation_id == "corr-s1"
    assert reply.body == {"verdict": "invalid_code", "attempts_left": 4}


def test_a_wrong_code_publishes_no_confirmation(worker):
    worker.request_code()
    worker.submit("000000" if worker.mailer.sent[0]["code"] != "000000" else "111111")
    assert worker.broker.sent_to(worker.settings.account_confirmed_queue) == []


def test_a_submission_of_the_wrong_type_is_dead_lettered(worker):
    message = Outgoing(type="something.else", body={"email": EMAIL, "code": "123456"})
    assert worker.handlers.on_code_submitted(as_delivered(message), worker.broker).outcome is Outcome.DEAD_LETTER


def test_the_plain_text_part_holds_the_code_as_its_only_six_digit_number():
    from email_service.adapters.mailer import FlaskMailer, mail_app

    settings = Settings.from_env(BASE_ENV)
    app = mail_app(settings)
    app.config["MAIL_SUPPRESS_SEND"] = True
    mailer = FlaskMailer(app, timeout=1)
    with mailer.mail.record_messages() as outbox:
        mailer.send_verification(EMAIL, "999999", "123456", "10 minutes")
    [message] = outbox
    assert re.findall(r"\b\d{6}\b", message.body) == ["123456"]
    assert "10 minutes" in message.body
    assert "123456" in message.html


def test_an_address_smtp_cannot_encode_is_a_permanent_failure():
    from devtools.mailsink import MailSink
    from email_service.adapters.mailer import FlaskMailer, mail_app

    sink = MailSink().start()
    try:
        settings = Settings.from_env({**BASE_ENV, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port)})
        mailer = FlaskMailer(mail_app(settings), timeout=2)
        with pytest.raises(PermanentMailError):
            mailer.send_verification("j\u00f6hn@example.com", None, "123456", "10 minutes")
        mailer.send_verification(EMAIL, None, "123456", "10 minutes")
    finally:
        sink.stop()
    assert [mail.recipient for mail in sink.all()] == [EMAIL]


def test_smtp_over_tls_verifies_the_servers_certificate_and_name():
    import ssl

    from common.settings import SettingsError
    from email_service.adapters.mailer import _verifying_tls_context

    context = _verifying_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    with pytest.raises(SettingsError, match="SMTP_USE_TLS"):
        Settings.from_env({**BASE_ENV, "SMTP_USE_TLS": "true", "SMTP_USE_SSL": "true"})
