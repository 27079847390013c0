"""The roads out and the failover between them, on fakes and the local SMTP sink: which failure is
which kind, when a breaker opens and closes, and what the handlers do with a dead address."""

from __future__ import annotations

import json
import threading

import fakeredis
import pytest

from common.messaging.consumer import Outcome
from common.messaging.messages import AddressSuppressed, CodeRequested, NoticeRequested, Purpose
from devtools.mailsink import MailSink
from email_service import bootstrap
from email_service.adapters import postmark, ses
from email_service.adapters.mailer import Mail, SmtpConnections, SmtpMailer
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.adapters.suppressions import RedisSuppressions
from email_service.config import Settings
from email_service.delivery import FailoverTransport
from email_service.domain.breaker import Breaker
from email_service.ports import OutgoingMail, PermanentMailError, RecipientRefused, TransientMailError
from email_service.suppressions import lift_suppression
from tests.fakes import InMemoryBroker, MailOutbox, as_delivered
from tests.unit.conftest import BASE_ENV, Clock


def mail(to: str = "a@example.com") -> Mail:
    return Mail(subject="Hi", sender="no-reply@example.com", recipients=[to], body="123456", html="<p>123456</p>")


class Road:
    """A transport whose answer the test chooses; it keeps what it took."""

    def __init__(self, name: str):
        self.name = name
        self.fail_with: Exception | None = None
        self.took: list[OutgoingMail] = []
        self.tries = 0

    def deliver(self, mail: OutgoingMail) -> None:
        self.tries += 1
        if self.fail_with is not None:
            raise self.fail_with
        self.took.append(mail)

    def close(self) -> None:
        pass


class Recorded:
    def __init__(self):
        self.events: list[tuple] = []

    def sent(self, transport, failed_over):
        self.events.append(("sent", transport, failed_over))

    def failed(self, transport, kind):
        self.events.append(("failed", transport, kind))

    def breaker(self, transport, opened):
        self.events.append(("breaker", transport, opened))


# --- the breaker's rule ---------------------------------------------------------------------


def test_a_breaker_opens_after_failures_in_a_row_and_a_success_in_between_resets_the_count():
    breaker = Breaker(failures_to_open=3, cooldown_seconds=30)
    assert not breaker.failed(0) and not breaker.failed(1)
    breaker.succeeded()
    assert not breaker.failed(2) and not breaker.failed(3)
    assert breaker.failed(4)
    assert breaker.is_open(4) and not breaker.take(33.9)


def test_past_its_cooldown_one_mail_tries_the_transport_and_its_outcome_decides():
    breaker = Breaker(failures_to_open=1, cooldown_seconds=10)
    breaker.failed(0)
    assert breaker.take(10)  # the trial
    assert not breaker.take(10)  # others keep skipping it while the trial runs
    assert breaker.failed(11)  # a failed trial opens it again at once, for a full cooldown
    assert not breaker.take(20.9) and breaker.take(21)
    assert breaker.succeeded()
    assert breaker.take(21) and not breaker.is_open(21)


# --- failover -------------------------------------------------------------------------------


def roads(*names: str, failures_to_open: int = 2, cooldown: float = 30.0, clock=None):
    made = [Road(name) for name in names]
    events = Recorded()
    failover = FailoverTransport(made, failures_to_open, cooldown, events, clock=clock or Clock(0.0))
    return failover, made, events


def test_a_transient_failure_moves_the_mail_to_the_next_transport_at_once():
    failover, (smtp, ses_road), events = roads("smtp", "ses")
    smtp.fail_with = TransientMailError("SMTP 421")
    sent = mail()
    failover.deliver(sent)
    assert smtp.took == [] and ses_road.took == [sent]
    assert events.events == [("failed", "smtp", "transient"), ("sent", "ses", True)]


def test_a_permanent_refusal_is_not_tried_elsewhere():
    failover, (smtp, ses_road), events = roads("smtp", "ses")
    smtp.fail_with = RecipientRefused("SMTP 550 5.1.1", transport="smtp")
    with pytest.raises(RecipientRefused):
        failover.deliver(mail())
    assert ses_road.tries == 0
    assert events.events == [("failed", "smtp", "recipient")]


def test_when_every_transport_fails_the_mail_goes_to_the_retry_ladder():
    failover, made, _ = roads("smtp", "ses", "postmark")
    for road in made:
        road.fail_with = TransientMailError("down")
    with pytest.raises(TransientMailError, match="every transport failed"):
        failover.deliver(mail())
    assert [road.tries for road in made] == [1, 1, 1]


def test_an_open_breaker_skips_its_transport_until_the_cooldown_then_a_success_closes_it():
    clock = Clock(0.0)
    failover, (smtp, postmark_road), events = roads("smtp", "postmark", failures_to_open=2, cooldown=30, clock=clock)
    smtp.fail_with = TransientMailError("SMTP 421")
    failover.deliver(mail())
    failover.deliver(mail())
    assert ("breaker", "smtp", True) in events.events
    assert failover.open_transports() == {"smtp"}
    tries = smtp.tries
    for _ in range(5):
        failover.deliver(mail())
    assert smtp.tries == tries  # skipped while open
    assert len(postmark_road.took) == 7
    smtp.fail_with = None
    clock.advance(30)
    failover.deliver(mail())
    assert len(smtp.took) == 1 and failover.open_transports() == set()
    assert events.events[-1] == ("sent", "smtp", False) and ("breaker", "smtp", False) in events.events


def test_a_road_alone_is_never_rested_there_being_nowhere_else_to_go():
    failover, (smtp,), events = roads("smtp", failures_to_open=2)
    smtp.fail_with = TransientMailError("SMTP 421")
    for _ in range(10):
        with pytest.raises(TransientMailError):
            failover.deliver(mail())
    assert smtp.tries == 10 and failover.open_transports() == set()
    assert [event for event in events.events if event[0] == "breaker"] == []


def test_the_breaker_is_shared_by_every_thread():
    failover, (smtp, backup), _ = roads("smtp", "backup", failures_to_open=5)
    smtp.fail_with = TransientMailError("SMTP 421")
    threads = [threading.Thread(target=lambda: [failover.deliver(mail()) for _ in range(10)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The fifth failure opened it for all four threads; each other thread may have had one try in flight.
    assert 5 <= smtp.tries <= 5 + 3
    assert len(backup.took) == 40


def test_a_mail_that_fails_over_carries_the_same_bytes_and_message_id():
    failover, (first, second), _ = roads("smtp", "ses")
    first.fail_with = TransientMailError("down")
    sent = mail()
    data = sent.data
    failover.deliver(sent)
    assert second.took[0].data is data and b"Message-ID: <" + sent.message_id.encode() in data


# --- how each road reads its failures --------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("550 5.1.1 <a@example.com>: Recipient address rejected: User unknown", RecipientRefused),
        ("550 5.2.1 Mailbox disabled", RecipientRefused),
        ("553 mailbox name not allowed", RecipientRefused),
        ("550 5.7.1 Relaying denied", PermanentMailError),
        ("552 5.2.2 Mailbox full", PermanentMailError),
        ("421 4.3.2 Service not available, closing channel", TransientMailError),
        ("450 4.2.1 Try again later", TransientMailError),
    ],
)
def test_smtp_recipient_refusals_are_sorted_by_their_enhanced_status(reply, kind):
    sink = MailSink().start()
    sink.dead_mailboxes["a@example.com"] = reply
    connections = SmtpConnections("127.0.0.1", sink.port, timeout=5, idle_seconds=30)
    try:
        with pytest.raises(kind) as raised:
            connections.deliver(mail())
        if kind is PermanentMailError:
            assert not isinstance(raised.value, RecipientRefused)
        connections.deliver(mail("b@example.com"))  # the next mail is not held up
    finally:
        connections.close()
        sink.stop()
    assert [received.recipient for received in sink.all()] == ["b@example.com"]


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("MessageRejected", 400, PermanentMailError),
        ("BadRequestException", 400, PermanentMailError),
        ("TooManyRequestsException", 429, TransientMailError),
        ("Throttling", 400, TransientMailError),
        ("LimitExceededException", 400, TransientMailError),
        ("AccountSuspendedException", 400, TransientMailError),
        ("SendingPausedException", 400, TransientMailError),
        ("AccountSendingPausedException", 400, TransientMailError),
        ("MailFromDomainNotVerifiedException", 400, TransientMailError),
        ("InternalFailure", 500, TransientMailError),
    ],
)
def test_ses_errors_are_sorted_by_their_documented_codes(code, status, kind):
    error = ses.classify({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}})
    assert type(error) is kind


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (422, 406, RecipientRefused),
        (422, 300, PermanentMailError),
        (422, 400, TransientMailError),  # sender signature not found: ours to fix
        (422, 405, TransientMailError),  # not allowed to send (account)
        (401, 10, TransientMailError),  # bad server token
        (429, 0, TransientMailError),
        (500, 0, TransientMailError),
        (503, 0, TransientMailError),
    ],
)
def test_postmark_errors_are_sorted_by_their_documented_codes(status, code, kind):
    error = postmark.classify(status, json.dumps({"ErrorCode": code, "Message": "x"}).encode())
    assert type(error) is kind


def test_a_provider_road_sends_no_tracking():
    import http.server

    bodies: list[dict] = []

    class Fake(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            answer = json.dumps({"ErrorCode": 0, "MessageID": "x"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    road = postmark.PostmarkTransport(f"http://127.0.0.1:{server.server_address[1]}", "token")
    try:
        sent = mail()
        road.deliver(sent)
        road.deliver(sent)
    finally:
        road.close()
        server.shutdown()
    assert bodies[0]["TrackOpens"] is False and bodies[0]["TrackLinks"] == "None"
    assert {"Name": "Message-ID", "Value": sent.message_id_header} in bodies[0]["Headers"]
    assert {"Name": "Auto-Submitted", "Value": "auto-generated"} in bodies[0]["Headers"]


def test_the_settings_refuse_unknown_transports_and_postmark_without_a_token():
    from common.settings import SettingsError

    with pytest.raises(SettingsError, match="pigeon"):
        Settings.from_env({**BASE_ENV, "MAIL_TRANSPORTS": "smtp,pigeon"})
    with pytest.raises(SettingsError, match="POSTMARK_SERVER_TOKEN"):
        Settings.from_env({**BASE_ENV, "MAIL_TRANSPORTS": "smtp,postmark"})
    settings = Settings.from_env({**BASE_ENV, "MAIL_TRANSPORTS": "postmark, ses,smtp", "POSTMARK_SERVER_TOKEN": "t"})
    assert bootstrap.build_transport(settings).names == ["postmark", "ses", "smtp"]


# --- the handlers and the suppression list --------------------------------------------------


class Worker:
    def __init__(self):
        self.settings = Settings.from_env(BASE_ENV)
        self.redis = fakeredis.FakeRedis()
        self.suppressions = RedisSuppressions(self.redis, "test")
        self.outbox = MailOutbox()
        self.road = Road("smtp")
        self.road.deliver = self._deliver
        self.failover = FailoverTransport([self.road], 5, 30)
        self.mailer = SmtpMailer(self.settings.mail_default_sender, self.failover)
        self.clock = Clock(10_000.0)
        self.handlers = bootstrap.build_handlers(
            self.settings,
            store=RedisPendingCodes(self.redis, "test"),
            mailer=self.mailer,
            clock=self.clock,
            suppressions=self.suppressions,
        )
        self.broker = InMemoryBroker()
        self.dead: set[str] = set()

    def _deliver(self, sent: OutgoingMail) -> None:
        if sent.recipients[0] in self.dead:
            raise RecipientRefused("SMTP 550 5.1.1", transport="smtp")
        self.outbox.append(sent)

    def request_code(self, email: str, message_id: str):
        request = CodeRequested(Purpose.RESET_PASSWORD, "u1", email, self.clock())
        return self.handlers.code_requests(as_delivered(request.outgoing(message_id=message_id)), self.broker)


def test_a_refused_address_is_suppressed_auth_is_told_and_later_mail_is_acked_unsent():
    worker = Worker()
    worker.dead.add("dead@example.com")
    result = worker.request_code("dead@example.com", "m1")
    assert result.outcome is Outcome.ACK
    assert worker.suppressions.is_suppressed("Dead@Example.com")
    [told] = worker.broker.sent_to(worker.settings.account_confirmed_queue)
    assert told.type == AddressSuppressed.TYPE
    assert told.body == {"email": "dead@example.com", "reason": "refused", "source": "smtp"}
    worker.dead.clear()
    notice = NoticeRequested(
        template="email_change_requested", email="dead@example.com", context={"new_email": "n@x.io"}
    )
    result = worker.handlers.code_requests(as_delivered(notice.outgoing(message_id="n1")), worker.broker)
    assert result.outcome is Outcome.ACK and worker.outbox == []


def test_a_report_relayed_by_auth_suppresses_the_address_and_a_lift_mails_it_again():
    worker = Worker()
    report = AddressSuppressed(email="gone@example.com", reason="complaint", source="postmark")
    worker.handlers.code_requests(as_delivered(report.outgoing(message_id="s1")), worker.broker)
    assert worker.request_code("gone@example.com", "m1").outcome is Outcome.ACK
    assert worker.outbox == []
    published = []
    assert lift_suppression(
        worker.suppressions, lambda queue, message: published.append((queue, message)), "auth-q", "gone@example.com"
    )
    assert [(queue, message.body) for queue, message in published] == [("auth-q", {"email": "gone@example.com"})]
    assert worker.request_code("gone@example.com", "m2").outcome is Outcome.ACK
    assert [sent.recipients for sent in worker.outbox] == [["gone@example.com"]]
    assert worker.suppressions.entries() == {}


def test_each_process_reads_the_list_from_its_copy_and_sees_another_s_change_within_the_refresh():
    client = fakeredis.FakeRedis()
    clock = Clock(0.0)
    here, there = (RedisSuppressions(client, "test", refresh_seconds=1.0, clock=clock) for _ in range(2))
    assert not there.is_suppressed("a@example.com")  # its copy, read now
    assert here.suppress("A@Example.com", "bounce", "ses", now=0.0)
    assert here.is_suppressed("a@example.com")  # its own change, at once
    assert not there.is_suppressed("a@example.com")  # not looked again yet
    clock.advance(1.0)
    assert there.is_suppressed("a@example.com")
    assert not here.suppress("a@example.com", "complaint", "postmark", now=1.0)  # once
    assert there.lift("a@example.com") and not there.is_suppressed("a@example.com")
    clock.advance(1.0)
    assert not here.is_suppressed("a@example.com")
    assert here.entries() == {}


def test_the_list_is_read_again_only_when_its_version_moved():
    client = fakeredis.FakeRedis()
    clock = Clock(0.0)
    suppressions = RedisSuppressions(client, "test", refresh_seconds=1.0, clock=clock)
    suppressions.is_suppressed("a@example.com")
    reads = []
    original = client.hkeys
    client.hkeys = lambda key: reads.append(key) or original(key)
    for _ in range(3):
        clock.advance(1.0)
        suppressions.is_suppressed("a@example.com")
    assert reads == []
    RedisSuppressions(client, "test").suppress("b@example.com", "bounce", "smtp", now=0.0)
    clock.advance(1.0)
    assert suppressions.is_suppressed("b@example.com") and len(reads) == 1
