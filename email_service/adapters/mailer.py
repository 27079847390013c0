"""Sending mail through Flask-Mail, with a socket timeout and failures sorted by kind."""

from __future__ import annotations

import functools
import smtplib
import ssl
import threading
import time
from collections.abc import Callable

from flask import Flask, render_template
from flask_mail import Connection, Mail, Message

from email_service.ports import PermanentMailError, TransientMailError


@functools.cache
def _verifying_tls_context() -> ssl.SSLContext:
    # smtplib checks no certificate unless handed a context that does. Built
    # once: loading the CA bundle takes tens of milliseconds.
    return ssl.create_default_context()


class _TimeoutConnection(Connection):
    # Flask-Mail opens smtplib connections without a timeout; a stalled server
    # would hang the consumer (and its heartbeats) forever.
    timeout: float = 10.0

    def configure_host(self) -> smtplib.SMTP:
        if self.mail.use_ssl:
            host = smtplib.SMTP_SSL(
                self.mail.server, self.mail.port, timeout=self.timeout, context=_verifying_tls_context()
            )
        else:
            host = smtplib.SMTP(self.mail.server, self.mail.port, timeout=self.timeout)
        if self.mail.use_tls:
            host.starttls(context=_verifying_tls_context())
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


class _TimeoutMail(Mail):
    def __init__(self, timeout: float):
        super().__init__()
        self._timeout = timeout

    def connect(self) -> Connection:
        connection = _TimeoutConnection(self.app.extensions["mail"])
        connection.timeout = self._timeout
        return connection


class FlaskMailer:
    """Renders the verification email from templates and hands it to the SMTP server."""

    def __init__(self, app: Flask, timeout: float):
        self.app = app
        self.mail = _TimeoutMail(timeout)
        self.mail.init_app(app)
        self.mail.app = app

    def send_verification(self, email: str, code: str, validity: str, registered_at: str) -> None:
        # No name: it is whatever the registrant typed, mailed to an address they chose.
        with self.app.app_context():
            context = {"code": code, "validity": validity, "registered_at": registered_at}
            message = Message(
                subject="Confirm your email address",
                recipients=[email],
                body=render_template("verification.txt", **context),
                html=render_template("verification.html", **context),
            )
            try:
                self.mail.send(message)
            except UnicodeError:
                raise PermanentMailError("address or content cannot be encoded for SMTP") from None
            except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as error:
                # Our login or sender is refused: a configuration problem an
                # operator fixes, not a property of this message.
                raise TransientMailError(f"{type(error).__name__}: SMTP {error.smtp_code}") from None
            except smtplib.SMTPRecipientsRefused as error:
                codes = [code for code, _ in error.recipients.values()]
                raise _classify(min(codes), "recipient refused") from None
            except smtplib.SMTPResponseException as error:
                raise _classify(error.smtp_code, type(error).__name__) from None
            except (TimeoutError, smtplib.SMTPException, OSError) as error:
                raise TransientMailError(type(error).__name__) from None


class SmtpProbe:
    """Does the SMTP server answer? Connect and NOOP, remembered a few seconds so probes stay cheap."""

    def __init__(
        self,
        host: str,
        port: int,
        use_ssl: bool = False,
        timeout: float = 2.0,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._host = host
        self._port = port
        self._use_ssl = use_ssl
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._answered = False

    def __call__(self) -> bool:
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self._cache_seconds:
                self._answered = self._noop()
                self._checked_at = self._clock()
            return self._answered

    def _noop(self) -> bool:
        try:
            if self._use_ssl:
                smtp = smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=_verifying_tls_context())
            else:
                smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            with smtp:
                status, _ = smtp.noop()
            return status == 250
        except (OSError, smtplib.SMTPException):
            return False


def _classify(smtp_code: int, what: str) -> Exception:
    if 400 <= smtp_code < 500:
        return TransientMailError(f"{what}: SMTP {smtp_code}")
    return PermanentMailError(f"{what}: SMTP {smtp_code}")


def mail_app(settings) -> Flask:
    app = Flask("email_service", template_folder="templates", root_path=_package_root())
    app.config.update(
        MAIL_SERVER=settings.smtp_host,
        MAIL_PORT=settings.smtp_port,
        MAIL_USERNAME=settings.smtp_username,
        MAIL_PASSWORD=settings.smtp_password,
        MAIL_USE_TLS=settings.smtp_use_tls,
        MAIL_USE_SSL=settings.smtp_use_ssl,
        MAIL_DEFAULT_SENDER=settings.mail_default_sender,
    )
    return app


def _package_root() -> str:
    import email_service

    return email_service.__path__[0]
