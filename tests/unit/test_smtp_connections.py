"""The worker's SMTP side: one kept connection per thread, checked, replaced, closed; the MIME it sends."""

from __future__ import annotations

import email
import email.policy
import threading

import pytest

from devtools.mailsink import MailSink
from email_service.adapters.mailer import Mail, SmtpConnections, SmtpMailer
from email_service.ports import TransientMailError
from tests.unit.conftest import Clock

CONTEXT = {"code": "123456", "link_token": "t" * 43, "validity_seconds": 600, "link": "http://x/auth/verify?token=a.b"}


@pytest.fixture
def sink():
    started = MailSink().start()
    yield started
    started.stop()


def connections(sink: MailSink, clock=None, idle_seconds: float = 30.0) -> SmtpConnections:
    return SmtpConnections(
        "127.0.0.1",
        sink.port,
        timeout=5,
        idle_seconds=idle_seconds,
        clock=clock or Clock(0.0),
        local_hostname="worker.test",
    )


def send(mailer: SmtpMailer, to: str) -> None:
    mailer.send("verify_email", to, CONTEXT)


def test_one_thread_mails_over_one_kept_connection_and_close_says_quit(sink):
    transport = connections(sink)
    mailer = SmtpMailer("no-reply@example.com", transport)
    for index in range(5):
        send(mailer, f"user{index}@example.com")
    assert transport.opened == 1
    assert [mail.code for mail in sink.all()] == ["123456"] * 5
    mailer.close()
    send(mailer, "after@example.com")  # a closed connection is not reused: a new one is opened
    assert transport.opened == 2
    mailer.close()


def test_each_thread_has_its_own_connection(sink):
    transport = connections(sink)
    mailer = SmtpMailer("no-reply@example.com", transport)
    threads = [threading.Thread(target=send, args=(mailer, f"t{index}@example.com")) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    send(mailer, "main@example.com")
    assert transport.opened == 4
    assert len(sink.wait_for("main@example.com")) == 1
    mailer.close()


def test_a_connection_idle_too_long_is_replaced_and_one_idle_a_while_is_checked(sink):
    clock = Clock(0.0)
    transport = connections(sink, clock, idle_seconds=30)
    mailer = SmtpMailer("no-reply@example.com", transport)
    send(mailer, "a@example.com")
    clock.advance(10)  # checked with NOOP, still answers: kept
    send(mailer, "b@example.com")
    assert transport.opened == 1
    clock.advance(30)
    send(mailer, "c@example.com")
    assert transport.opened == 2
    mailer.close()


def test_a_connection_the_server_dropped_is_reopened_and_the_mail_goes_out_once(sink):
    transport = connections(sink)
    mailer = SmtpMailer("no-reply@example.com", transport)
    send(mailer, "first@example.com")
    port = sink.port
    sink.stop()  # the server goes away and comes back: the kept connection is dead
    again = MailSink(port=port).start()
    try:
        send(mailer, "second@example.com")
        assert transport.opened == 2
        assert [mail.recipient for mail in again.all()] == ["second@example.com"]
    finally:
        mailer.close()
        again.stop()


def test_a_server_that_does_not_answer_is_a_transient_failure_and_the_next_mail_starts_clean(sink):
    transport = connections(sink)
    mailer = SmtpMailer("no-reply@example.com", transport)
    port = sink.port
    sink.stop()
    with pytest.raises(TransientMailError):
        send(mailer, "lost@example.com")
    again = MailSink(port=port).start()
    try:
        send(mailer, "kept@example.com")
        assert [mail.recipient for mail in again.all()] == ["kept@example.com"]
    finally:
        mailer.close()
        again.stop()


def test_a_refused_recipient_is_transient_on_451_and_the_connection_is_not_reused(sink):
    transport = connections(sink)
    mailer = SmtpMailer("no-reply@example.com", transport)
    sink.refusing = True
    with pytest.raises(TransientMailError, match="451"):
        send(mailer, "later@example.com")
    sink.refusing = False
    send(mailer, "later@example.com")
    assert transport.opened == 2
    mailer.close()


@pytest.mark.parametrize(
    "body",
    ["plain ASCII\nsecond line", "Grüße, ça va?\nzweite Zeile", "x" * 2000],
    ids=["ascii", "non-ascii", "long-line"],
)
def test_the_mime_bytes_parse_back_to_the_same_text_and_html(body):
    mail = Mail(
        subject="Bestätigen Sie Ihre Adresse",
        sender="no-reply@example.com",
        recipients=["a@example.com"],
        body=body,
        html=f"<p>{body}</p>",
    )
    raw = mail.as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["subject"]) == mail.subject
    assert parsed["to"] == "a@example.com"
    assert parsed["message-id"].endswith("@example.com>")
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    # On the wire every line ends in CRLF, whatever the template used.
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == body
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == f"<p>{body}</p>"


def test_a_header_with_a_line_break_is_refused():
    from email_service.ports import PermanentMailError

    mail = Mail("Hello\r\nBcc: x@example.com", "no-reply@example.com", ["a@example.com"], "b", "h")
    with pytest.raises(PermanentMailError):
        mail.as_bytes()


class ClosingAfterFirstMail:
    """An SMTP server that answers 421 to the second MAIL of a connection, as one closing idle clients does."""

    def __init__(self):
        self.mails_per_session: dict[int, int] = {}
        self.delivered: list[str] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        count = self.mails_per_session.get(id(session), 0) + 1
        self.mails_per_session[id(session)] = count
        if count > 1:
            return "421 4.4.2 closing idle connection"
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.delivered.extend(envelope.rcpt_tos)
        return "250 OK"


def test_a_kept_connection_answered_421_is_replaced_and_the_mail_goes_out_once():
    from aiosmtpd.controller import Controller

    from devtools.mailsink import free_port

    handler = ClosingAfterFirstMail()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        transport = SmtpConnections(
            "127.0.0.1", controller.port, timeout=5, idle_seconds=30, clock=Clock(0.0), local_hostname="worker.test"
        )
        mailer = SmtpMailer("no-reply@example.com", transport)
        send(mailer, "first@example.com")
        send(mailer, "second@example.com")
        mailer.close()
    finally:
        controller.stop()
    assert handler.delivered == ["first@example.com", "second@example.com"]
    assert transport.opened == 2
