"""The worker's handlers on fakes: what is stored, mailed, published, and acked."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import fakeredis
import pytest

from common.messaging.consumer import Outcome
from common.messaging.envelope import Outgoing
from common.messaging.messages import CodeRequested, CodeSubmitted, NoticeRequested, Purpose
from common.settings import SettingsError
from email_service import bootstrap
from email_service.adapters.mailer import SmtpMailer
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.config import Settings
from email_service.domain.codes import PendingCode, Slot
from email_service.handlers import NOTICE_TEMPLATES
from email_service.ports import IssueStart, PermanentMailError, TransientMailError
from tests.fakes import InMemoryBroker, MailOutbox, RecordingMailer, as_delivered
from tests.unit.conftest import BASE_ENV, Clock

EMAIL = "a@example.com"
REGISTRATION = Slot(Purpose.VERIFY_EMAIL, EMAIL)


class Worker:
    def __init__(self, env=None):
        self.settings = Settings.from_env({**BASE_ENV, **(env or {})})
        self.store = RedisPendingCodes(fakeredis.FakeRedis(), "test")
        self.mailer = RecordingMailer()
        self.clock = Clock(10_000.0)
        self.handlers = bootstrap.build_handlers(self.settings, store=self.store, mailer=self.mailer, clock=self.clock)
        self.broker = InMemoryBroker()

    def request_code(self, message_id="m1", requested_at=None, purpose=Purpose.VERIFY_EMAIL, **extra):
        request = CodeRequested(purpose, "u1", EMAIL, requested_at or self.clock(), name="Ada", **extra)
        return self.handlers.code_requests(as_delivered(request.outgoing(message_id=message_id)), self.broker)

    def submit(self, code=None, message_id="s1", purpose=Purpose.VERIFY_EMAIL, link_token=None, confirmation=None):
        submission = CodeSubmitted(purpose, EMAIL, code=code, link_token=link_token, confirmation=confirmation)
        message = submission.outgoing(message_id=message_id, reply_to="reply-here", correlation_id=f"corr-{message_id}")
        return self.handlers.code_submissions(as_delivered(message), self.broker)

    def wrong(self, index=0):
        code = self.mailer.sent[index]["code"]
        return "000000" if code != "000000" else "111111"


@pytest.fixture
def worker():
    return Worker()


@pytest.fixture
def make_worker():
    return Worker


def test_a_code_request_stores_the_registration_and_mails_the_code(worker):
    registered_at = datetime(2026, 11, 22, 3, 1, 30, tzinfo=UTC).timestamp()
    assert worker.request_code(sequence=7, registered_at=registered_at).outcome is Outcome.ACK
    [mail] = worker.mailer.sent
    assert mail["email"] == EMAIL and mail["validity_seconds"] == 600
    assert mail["template"] == "verify_email"
    assert mail["registered_at"] == "2026-11-22 03:01 UTC"
    assert "Ada" not in str(mail)  # the name is not mailed
    pending = worker.store.get(REGISTRATION)
    assert pending.user_id == "u1" and pending.mail_sent and pending.attempts == 0 and pending.sequence == 7


def test_a_redelivered_request_does_not_send_a_second_code(worker):
    worker.request_code(message_id="m1")
    worker.request_code(message_id="m1")
    assert len(worker.mailer.sent) == 1
    assert worker.submit(worker.mailer.sent[0]["code"]).outcome is Outcome.ACK


def test_an_older_request_does_not_void_a_newer_code(worker):
    worker.request_code(message_id="new", requested_at=200.0)
    worker.request_code(message_id="old", requested_at=100.0)
    assert len(worker.mailer.sent) == 1


def test_requests_are_ordered_by_their_sequence_number_not_their_clock(worker):
    # Two auth processes whose clocks disagree: auth's numbering decides which request is newer.
    worker.request_code(message_id="newer", requested_at=100.0, sequence=2)
    worker.request_code(message_id="older", requested_at=200.0, sequence=1)
    [mail] = worker.mailer.sent
    assert worker.submit(mail["code"]).outcome is Outcome.ACK
    [confirmed] = worker.broker.sent_to(worker.settings.account_confirmed_queue)
    assert confirmed.body["sequence"] == 2


def test_a_newer_request_over_the_quota_still_voids_the_earlier_code(make_worker):
    worker = make_worker({"MAX_CODES_PER_HOUR": "1"})
    worker.request_code(message_id="first", sequence=1)
    [mail] = worker.mailer.sent
    assert worker.request_code(message_id="second", sequence=2).outcome is Outcome.ACK
    assert len(worker.mailer.sent) == 1  # over the quota: no second mail
    replies = []
    worker.broker.reply = lambda reply_to, message: replies.append(message.body)
    worker.submit(mail["code"])
    assert [reply["verdict"] for reply in replies] == ["code_expired"]
    assert worker.broker.sent_to(worker.settings.account_confirmed_queue) == []


def test_a_request_whose_mail_failed_sends_a_fresh_code_on_redelivery(worker):
    worker.mailer.fail_with = TransientMailError("timeout")
    assert worker.request_code(message_id="m1").outcome is Outcome.RETRY
    worker.mailer.fail_with = None
    assert worker.request_code(message_id="m1").outcome is Outcome.ACK
    assert len(worker.mailer.sent) == 1


def test_a_mailer_that_raises_records_no_mail_and_frees_the_address(worker):
    worker.mailer.fail_with = LookupError("template sets no subject")
    with pytest.raises(LookupError):  # the consumer parks it for a retry
        worker.request_code(message_id="m1")
    assert not worker.store.get(REGISTRATION).mail_sent
    worker.mailer.fail_with = None
    assert worker.request_code(message_id="m1").outcome is Outcome.ACK  # not "being mailed", not "sent"
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
        {"user_id": "u1", "email": EMAIL, "requested_at": 1.0, "sequence": "first"},
        {"user_id": "u1", "email": EMAIL, "requested_at": 1.0, "sequence": 1.5},
    ],
)
def test_a_malformed_code_request_is_dead_lettered_without_mail(body):
    worker = Worker()
    message = Outgoing(type=CodeRequested.TYPE, body={"purpose": "verify_email", **body})
    result = worker.handlers.code_requests(as_delivered(message), worker.broker)
    assert result.outcome is Outcome.DEAD_LETTER and result.reason.startswith("malformed")
    assert worker.mailer.sent == []


def test_the_right_code_confirms_replies_and_publishes_once(worker):
    worker.request_code(sequence=3)
    code = worker.mailer.sent[0]["code"]
    assert worker.submit(code, confirmation="auth's keyed hash").outcome is Outcome.ACK
    [confirmed] = worker.broker.sent_to(worker.settings.account_confirmed_queue)
    assert confirmed.body == {
        "user_id": "u1",
        "purpose": "verify_email",
        "submission_id": "s1",
        "email": EMAIL,
        "sequence": 3,
        "confirmation": "auth's keyed hash",
    }
    assert worker.store.get(REGISTRATION) is None


def test_the_verdict_is_replied_to_the_reply_address_with_whose_code_it_was(worker):
    replies = []
    worker.broker.reply = lambda reply_to, message: replies.append((reply_to, message))
    worker.request_code()
    worker.submit(worker.wrong())
    worker.submit(worker.mailer.sent[0]["code"], message_id="s2")
    [(reply_to, wrong), (_, right)] = replies
    assert reply_to == "reply-here"
    assert wrong.correlation_id == "corr-s1"
    assert wrong.body == {
        "verdict": "invalid_code",
        "attempts_left": 4,
        "purpose": "verify_email",
        "user_id": None,
        "email": None,
        "sequence": None,
    }
    assert right.body == {
        "verdict": "verified",
        "attempts_left": 0,
        "purpose": "verify_email",
        "user_id": "u1",
        "email": EMAIL,
        # A request without a sequence number is placed by its time, in microseconds.
        "sequence": 10_000 * 1_000_000,
    }


def test_a_wrong_code_publishes_no_confirmation(worker):
    worker.request_code()
    worker.submit(worker.wrong())
    assert worker.broker.sent_to(worker.settings.account_confirmed_queue) == []


def test_a_submission_of_the_wrong_type_is_dead_lettered(worker):
    for message_type in ("something.else", CodeRequested.TYPE):
        message = Outgoing(type=message_type, body={"purpose": "verify_email", "email": EMAIL, "code": "123456"})
        result = worker.handlers.code_submissions(as_delivered(message), worker.broker)
        assert result.outcome is Outcome.DEAD_LETTER and "unexpected message type" in result.reason


def test_the_plain_text_part_holds_the_code_as_its_only_six_digit_number():
    outbox = MailOutbox()
    mailer = SmtpMailer(Settings.from_env(BASE_ENV).mail_default_sender, outbox)
    mailer.send(
        "verify_email",
        EMAIL,
        {"name": "999999", "code": "123456", "validity_seconds": 600, "registered_at": "2026-11-22 03:01 UTC"},
    )
    [message] = outbox
    assert message.subject == "Confirm your email address"
    assert message.body.startswith("Hello")
    assert re.findall(r"\b\d{6}\b", message.body) == ["123456"]  # a name in the context is not printed
    assert "10 minutes" in message.body and "2026-11-22 03:01 UTC" in message.body
    assert "123456" in message.html and "2026-11-22 03:01 UTC" in message.html
    assert "999999" not in message.html


def test_an_address_smtp_cannot_encode_is_a_permanent_failure():
    from devtools.mailsink import MailSink

    sink = MailSink().start()
    try:
        settings = Settings.from_env({**BASE_ENV, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port)})
        mailer = SmtpMailer.from_settings(settings)
        with pytest.raises(PermanentMailError):
            mailer.send("verify_email", "j\u00f6hn@example.com", {"code": "123456", "validity_seconds": 600})
        mailer.send("verify_email", EMAIL, {"code": "123456", "validity_seconds": 600})
        mailer.close()
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


RESET = Slot(Purpose.RESET_PASSWORD, EMAIL)


def test_a_reset_code_does_not_touch_a_pending_registration(worker):
    worker.request_code(message_id="registration")
    worker.request_code(message_id="reset", purpose=Purpose.RESET_PASSWORD)
    registration_mail, reset_mail = worker.mailer.sent
    assert (registration_mail["template"], reset_mail["template"]) == ("verify_email", "reset_password")
    assert worker.store.get(REGISTRATION).message_id == "registration"
    assert worker.store.get(RESET).message_id == "reset"
    assert worker.store.get(REGISTRATION).mail_sent and worker.store.get(RESET).mail_sent


def test_a_code_is_accepted_for_its_own_purpose_only(worker):
    worker.request_code(message_id="registration")
    worker.request_code(message_id="reset", purpose=Purpose.RESET_PASSWORD)
    registration_code, reset_code = (mail["code"] for mail in worker.mailer.sent)
    assert registration_code != reset_code  # fixed ids and key: two different codes
    replies = []
    worker.broker.reply = lambda reply_to, message: replies.append(message.body)
    worker.submit(reset_code, message_id="s1")  # a reset code sent to confirm
    assert replies[-1]["verdict"] == "invalid_code"
    worker.submit(registration_code, message_id="s2", purpose=Purpose.RESET_PASSWORD)
    assert replies[-1]["verdict"] == "invalid_code"
    worker.submit(reset_code, message_id="s3", purpose=Purpose.RESET_PASSWORD)
    assert replies[-1] == {
        "verdict": "verified",
        "attempts_left": 0,
        "purpose": "reset_password",
        "user_id": "u1",
        "email": EMAIL,
        "sequence": 10_000 * 1_000_000,
    }
    # Every verified code is announced durably, under its own purpose and submission.
    [reset] = worker.broker.sent_to(worker.settings.account_confirmed_queue)
    assert (reset.body["purpose"], reset.body["submission_id"]) == ("reset_password", "s3")
    assert worker.store.get(RESET) is None and worker.store.get(REGISTRATION) is not None
    worker.submit(registration_code, message_id="s4")
    assert replies[-1]["verdict"] == "verified"
    _, registration = worker.broker.sent_to(worker.settings.account_confirmed_queue)
    assert (registration.body["purpose"], registration.body["submission_id"]) == ("verify_email", "s4")


def test_each_purpose_is_capped_on_its_own(worker):
    for index in range(5):
        worker.request_code(message_id=f"m{index}", requested_at=float(index + 1))
    worker.request_code(message_id="m5", requested_at=10.0)
    worker.request_code(message_id="r1", requested_at=11.0, purpose=Purpose.CHANGE_EMAIL)
    assert [mail["template"] for mail in worker.mailer.sent] == ["verify_email"] * 5 + ["change_email"]


def test_the_emailed_link_token_confirms_once_and_spends_the_code(worker):
    worker.request_code()
    [mail] = worker.mailer.sent
    assert mail["link_token"] != mail["code"]
    replies = []
    worker.broker.reply = lambda reply_to, message: replies.append(message.body["verdict"])
    worker.submit(link_token=mail["link_token"], message_id="s1")
    worker.submit(link_token=mail["link_token"], message_id="s2")
    worker.submit(mail["code"], message_id="s3")
    assert replies == ["verified", "code_expired", "code_expired"]
    assert len(worker.broker.sent_to(worker.settings.account_confirmed_queue)) == 1


def test_messages_written_before_purposes_are_read_as_a_registrations():
    worker = Worker()
    legacy = Outgoing(
        type="account.registered",
        body={"user_id": "u1", "email": EMAIL, "name": None, "requested_at": worker.clock()},
        message_id="m1",
    )
    assert worker.handlers.code_requests(as_delivered(legacy), worker.broker).outcome is Outcome.ACK
    submitted = Outgoing(type="email_code.submitted", body={"email": EMAIL, "code": worker.mailer.sent[0]["code"]})
    assert worker.handlers.code_submissions(as_delivered(submitted), worker.broker).outcome is Outcome.ACK
    [confirmed] = worker.broker.sent_to(worker.settings.account_confirmed_queue)
    assert confirmed.body["user_id"] == "u1"


@pytest.mark.parametrize(
    "body",
    [
        {"email": EMAIL, "code": "123456"},  # the current type needs a purpose
        {"purpose": "sign_out", "email": EMAIL, "code": "123456"},
        {"purpose": "verify_email", "email": EMAIL},
        {"purpose": "verify_email", "email": EMAIL, "code": "123456", "link_token": "t" * 43},
        {"purpose": "verify_email", "email": EMAIL, "link_token": ""},
    ],
)
def test_a_submission_without_one_known_purpose_and_one_proof_is_dead_lettered(worker, body):
    message = Outgoing(type=CodeSubmitted.TYPE, body=body)
    result = worker.handlers.code_submissions(as_delivered(message), worker.broker)
    assert result.outcome is Outcome.DEAD_LETTER and result.reason.startswith("malformed")


@pytest.mark.parametrize("purpose", list(Purpose))
def test_every_purpose_has_an_email_with_the_code_standing_alone(purpose):
    from email_service.handlers import template_for

    outbox = MailOutbox()
    mailer = SmtpMailer(Settings.from_env(BASE_ENV).mail_default_sender, outbox)
    context = {"code": "123456", "link_token": "t" * 43, "validity_seconds": 600, "name": None}
    mailer.send(template_for(purpose), EMAIL, context)
    [message] = outbox
    assert message.subject and message.recipients == [EMAIL]
    assert re.findall(r"\b\d{6}\b", message.body) == ["123456"]
    assert "10 minutes" in message.body and "123456" in message.html


# --- one address's codes are stored and mailed in order, even by parallel workers -------------


class GatedMailer(RecordingMailer):
    """Holds the first send until the test lets it through: the test decides how two workers interleave."""

    def __init__(self):
        super().__init__()
        self.first_sending = threading.Event()
        self.release_first = threading.Event()
        self._gated = True

    def send(self, template, to, context):
        if self._gated:
            self._gated = False
            self.first_sending.set()
            assert self.release_first.wait(10)
        super().send(template, to, context)


def two_workers_on_one_store(worker):
    """Two workers (as two consumer threads or processes would be) sharing Redis and the SMTP server."""
    mailer = GatedMailer()
    build = bootstrap.build_handlers
    first = build(worker.settings, store=worker.store, mailer=mailer, clock=worker.clock)
    second = build(worker.settings, store=worker.store, mailer=mailer, clock=worker.clock)
    return first, second, mailer


def handle_in_thread(handlers, message_id, sequence, worker, results=None):
    request = CodeRequested(Purpose.VERIFY_EMAIL, "u1", EMAIL, 10_000.0, sequence=sequence)
    delivery = as_delivered(request.outgoing(message_id=message_id))

    def handle():
        result = handlers.code_requests(delivery, worker.broker)
        if results is not None:
            results.append(result)

    thread = threading.Thread(target=handle)
    thread.start()
    return thread


def test_a_newer_code_waits_until_the_mail_of_the_older_one_is_out(worker):
    first, second, mailer = two_workers_on_one_store(worker)
    older = handle_in_thread(first, "older", 1, worker)
    assert mailer.first_sending.wait(5)  # the older code is stored, its mail is on its way
    newer = handle_in_thread(second, "newer", 2, worker)
    newer.join(0.5)
    assert newer.is_alive(), "the newer request did not wait for the older one's mail"
    assert worker.store.get(REGISTRATION).sequence == 1 and mailer.sent == []

    mailer.release_first.set()
    older.join(5)
    newer.join(5)
    codes = [mail["code"] for mail in mailer.sent]
    assert len(codes) == 2 and worker.store.get(REGISTRATION).sequence == 2
    # The last mail holds the live code; the first one's code is void.
    worker.broker.reply = lambda reply_to, message: None
    worker.submit(codes[0], message_id="s-old")
    assert worker.broker.sent_to(worker.settings.account_confirmed_queue) == []
    worker.submit(codes[-1], message_id="s-new")
    [confirmed] = worker.broker.sent_to(worker.settings.account_confirmed_queue)
    assert confirmed.body["sequence"] == 2


def test_an_older_request_that_waited_for_a_newer_ones_mail_sends_nothing(worker):
    first, second, mailer = two_workers_on_one_store(worker)
    newer = handle_in_thread(first, "newer", 2, worker)
    assert mailer.first_sending.wait(5)
    results = []
    older = handle_in_thread(second, "older", 1, worker, results)
    older.join(0.3)
    assert older.is_alive()
    mailer.release_first.set()
    newer.join(5)
    older.join(5)
    assert [result.outcome for result in results] == [Outcome.ACK]
    assert len(mailer.sent) == 1 and worker.store.get(REGISTRATION).sequence == 2


def test_a_mailing_lock_left_by_a_dead_worker_sends_the_request_to_the_retry_ladder(make_worker):
    worker = make_worker({"SMTP_TIMEOUT_SECONDS": "0.2"})
    dead = PendingCode(REGISTRATION, "u0", "c" * 64, 0, "m0", 1.0, False, sequence=0)
    held = worker.store.start_issue(
        dead,
        "a worker that died while mailing",
        ttl_seconds=600,
        now=1.0,
        per_hour=9,
        per_day=9,
        hold_seconds=60,
        wait_seconds=0,
    )
    assert held is IssueStart.STORED
    result = worker.request_code(message_id="m1")
    assert result.outcome is Outcome.RETRY and "being mailed" in result.reason
    assert worker.mailer.sent == []


def test_the_verification_email_carries_a_link_naming_the_account_not_the_address():
    worker = Worker({"PUBLIC_BASE_URL": "https://id.example.org/"})
    worker.request_code()
    [mail] = worker.mailer.sent
    assert mail["link"] == f"https://id.example.org/auth/verify?token=u1.{mail['link_token']}"
    assert EMAIL not in mail["link"] and mail["code"] not in mail["link"]
    rendered = render("verify_email", mail)
    assert mail["link"] in rendered.body and mail["link"] in rendered.html


def test_only_the_verification_email_carries_a_link(worker):
    worker.request_code(purpose=Purpose.RESET_PASSWORD)
    worker.request_code(message_id="m2", purpose=Purpose.CHANGE_EMAIL)
    assert all("link" not in mail for mail in worker.mailer.sent)


def test_public_base_url_must_be_an_http_url():
    with pytest.raises(SettingsError):
        Settings.from_env({**BASE_ENV, "PUBLIC_BASE_URL": "javascript:alert(1)"})


def notice(template="email_changed", message_id="n1", context=None):
    message = NoticeRequested(template, EMAIL, context or {"new_email": "new@example.com"})
    return as_delivered(message.outgoing(message_id=message_id))


def test_a_notice_is_mailed_once_even_if_delivered_twice(worker):
    assert worker.handlers.code_requests(notice(), worker.broker).outcome is Outcome.ACK
    assert worker.handlers.code_requests(notice(), worker.broker).outcome is Outcome.ACK
    assert worker.mailer.sent == [
        {"template": "email_changed", "email": EMAIL, "new_email": "new@example.com", "locale": None}
    ]
    worker.handlers.code_requests(notice(message_id="n2"), worker.broker)
    assert len(worker.mailer.sent) == 2


def test_a_notice_whose_mail_failed_is_retried_and_then_sent(worker):
    worker.mailer.fail_with = TransientMailError("timeout")
    assert worker.handlers.code_requests(notice(), worker.broker).outcome is Outcome.RETRY
    worker.mailer.fail_with = None
    assert worker.handlers.code_requests(notice(), worker.broker).outcome is Outcome.ACK
    assert len(worker.mailer.sent) == 1


@pytest.mark.parametrize("template", ["verify_email", "reset_password", "../etc/passwd", "email_changed.txt"])
def test_a_notice_cannot_name_a_code_email_or_a_path(worker, template):
    outcome = worker.handlers.code_requests(notice(template=template), worker.broker)
    assert outcome.outcome is Outcome.DEAD_LETTER
    assert worker.mailer.sent == []


@pytest.mark.parametrize("template", sorted(NOTICE_TEMPLATES))
def test_every_notice_has_both_parts_and_no_six_digit_number(template):
    named = "new-123456@example.com"
    message = render(template, {"new_email": named, "restored_email": named, "left_email": named})
    assert message.subject and message.body.strip() and "<p>" in message.html
    if template.startswith("email_"):  # an address change's notices (and an undo's) name the other address
        assert "new-123456@example.com" in message.body and "new-123456@example.com" in message.html
    assert re.search(r"\b\d{6}\b", message.body.replace("new-123456@example.com", "")) is None


def render(template, context):
    return SmtpMailer(Settings.from_env(BASE_ENV).mail_default_sender, MailOutbox()).render(template, EMAIL, context)
