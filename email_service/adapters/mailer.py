"""Sending mail through Flask-Mail, with a socket timeout and failures sorted by kind."""

from __future__ import annotations

import functools
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, current_app
from flask_mail import Connection, Mail, Message

from email_service.adapters.translations import install_i18n, localized
from email_service.config import Settings
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
        host: smtplib.SMTP
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
        # As Flask-Mail's own connect: the app it was given, else the one in context.
        connection = _TimeoutConnection((self.app or current_app).extensions["mail"])
        connection.timeout = self._timeout
        return connection


class FlaskMailer:
    """Renders a named email from its template pair and hands it to the SMTP server.

    A kind of email is two files in ``templates/``: ``<name>.txt`` (which sets
    ``subject``) and ``<name>.html``. Adding one needs no code here. Both are
    written in the context's ``locale`` (adapters/translations.py).
    """

    def __init__(self, app: Flask, timeout: float):
        self.app = app
        self.mail = _TimeoutMail(timeout)
        self.mail.init_app(app)
        self.mail.app = app

    def send(self, template: str, to: str, context: Mapping[str, Any]) -> None:
        with self.app.app_context():
            message = self.render(template, to, context)
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

    def render(self, template: str, to: str, context: Mapping[str, Any]) -> Message:
        environment = self.app.jinja_env
        context = localized(context, self.app.config["DEFAULT_LOCALE"])
        text = environment.get_template(f"{template}.txt").make_module(dict(context))
        subject = getattr(text, "subject", None)
        if not subject:
            raise LookupError(f"template {template}.txt sets no subject")
        return Message(
            subject=str(subject),
            recipients=[to],
            body=str(text),
            html=environment.get_template(f"{template}.html").render(context),
        )


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
        smtp: smtplib.SMTP
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


def mail_app(settings: Settings) -> Flask:
    app = Flask("email_service", template_folder="templates", root_path=_package_root())
    app.config.update(
        MAIL_SERVER=settings.smtp_host,
        MAIL_PORT=settings.smtp_port,
        MAIL_USERNAME=settings.smtp_username,
        MAIL_PASSWORD=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        MAIL_USE_TLS=settings.smtp_use_tls,
        MAIL_USE_SSL=settings.smtp_use_ssl,
        MAIL_DEFAULT_SENDER=settings.mail_default_sender,
        DEFAULT_LOCALE=settings.default_locale,
    )
    install_i18n(app.jinja_env)
    return app


def _package_root() -> str:
    import email_service

    return email_service.__path__[0]
