"""Rendering named emails from pre-compiled templates, and mailing them over kept SMTP connections.

The templates are the built-in ones of ``templates/``; ``EMAIL_TEMPLATES_DIR``
may replace any of them per locale (``<dir>/<locale>/<name>.txt`` before
``<dir>/<name>.txt``). An override that does not compile or render is logged
and the built-in one used: a broken override never loses a mail.

A mail is rendered once into its MIME bytes, joined by hand: an ``email.message``
tree would cost about as much CPU as the rest of the mail (docs/decisions/hand-built-mime.md). It is handed to
the SMTP server over a connection its consumer thread keeps open between
mails (a new connection per mail cost a connect, a greeting, EHLO and QUIT,
and over TLS a handshake and a login). Failures are sorted by kind: worth a
retry later, or permanent.
"""

from __future__ import annotations

import binascii
import functools
import logging
import re
import secrets
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

import jinja2

from email_service.adapters.template_shapes import Parts, Shapes, valued_names
from email_service.adapters.translations import install_i18n, localized
from email_service.config import Settings
from email_service.ports import OutgoingMail, PermanentMailError, RecipientRefused, TransientMailError

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# A kept connection unused this long is probed with NOOP before the next mail rides on it.
SMTP_CHECK_AFTER_SECONDS = 2.0
# SMTP limits a line to 998 octets; a longer one (or any non-ASCII text) is sent quoted-printable.
MAX_LINE = 998
SERVICE_CLOSING = 421
# An addr-spec smtplib would send as it is inside <>: dot-atoms of ASCII atext, no display name,
# comment, quoting or brackets. Anything else goes through smtplib.quoteaddr.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*")


@functools.cache
def _verifying_tls_context() -> ssl.SSLContext:
    # smtplib checks no certificate unless handed a context that does. Built
    # once: it loads and parses the whole CA bundle.
    return ssl.create_default_context()


@dataclass(frozen=True)
class Mail:
    """One rendered email: what a test reads, and the bytes SMTP carries."""

    subject: str
    sender: str
    recipients: list[str]
    body: str
    html: str
    message_id: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def message_id_header(self) -> str:
        """The Message-ID, on the sender's domain (receivers and DMARC reports trust that more)."""
        domain = self.sender.rpartition("@")[2] or "localhost"
        return f"<{self.message_id}@{domain}>"

    @functools.cached_property
    def data(self) -> bytes:
        """The MIME bytes, built once: a mail that fails over carries the same bytes on every road."""
        return self.as_bytes()

    def as_bytes(self) -> bytes:
        cached = self.__dict__.get("data")
        if cached is not None:
            return cached
        boundary = f"=={secrets.token_hex(12)}=="
        head = (
            f"Subject: {_header(self.subject)}\r\n"
            f"From: {_header(self.sender)}\r\n"
            f"To: {_header(', '.join(self.recipients))}\r\n"
            f"Date: {formatdate(localtime=False, usegmt=True)}\r\n"
            f"Message-ID: {self.message_id_header}\r\n"
            "MIME-Version: 1.0\r\n"
            # RFC 3834: automatic replies (vacation notices) are not sent to it.
            "Auto-Submitted: auto-generated\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
            "\r\n"
        )
        return b"".join(
            (
                head.encode("ascii"),
                f"--{boundary}\r\n".encode(),
                _part("text/plain", self.body),
                f"--{boundary}\r\n".encode(),
                _part("text/html", self.html),
                f"--{boundary}--\r\n".encode(),
            )
        )


def _header(value: str) -> str:
    if any(character in value for character in "\r\n"):
        raise PermanentMailError("a header with a line break")
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()


def _part(content_type: str, text: str) -> bytes:
    lines = text.splitlines()
    if text.isascii() and all(len(line) <= MAX_LINE for line in lines):
        encoding, payload = "7bit", "\r\n".join(lines).encode("ascii")
    else:
        encoding = "quoted-printable"
        payload = binascii.b2a_qp("\n".join(lines).encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    return (
        f'Content-Type: {content_type}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n'.encode()
        + payload
        + b"\r\n"
    )


TemplatePair = tuple[jinja2.Template, jinja2.Template]


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html"]),
        # Compiled once per process; the files do not change under a running worker.
        auto_reload=False,
        cache_size=-1,
    )
    install_i18n(environment)
    return environment


class Templates:
    """Every template pair compiled once, at first use, and kept; ``overrides`` (EMAIL_TEMPLATES_DIR)
    replaces any file of a pair, for one locale (``<locale>/<name>.txt``) or all (``<name>.txt``)."""

    def __init__(self, folder: Path = TEMPLATES, overrides: Path | None = None):
        builtin = jinja2.FileSystemLoader(folder)
        self._environment = _environment(builtin)
        self._overrides = overrides
        # An override may include a built-in part (``_not_me.txt``) or one of its own.
        self._override_environment = (
            _environment(jinja2.ChoiceLoader([jinja2.FileSystemLoader(overrides), builtin])) if overrides else None
        )
        self._override_names: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._valued: dict[str, frozenset[str] | None] = {}
        self._lock = threading.Lock()

    @property
    def environment(self) -> jinja2.Environment:
        return self._environment

    @property
    def overrides(self) -> Path | None:
        return self._overrides

    def pair(self, template: str) -> TemplatePair:
        """The text and HTML templates of the email named ``template`` (the one place that finds them)."""
        environment = self._environment
        return environment.get_template(f"{template}.txt"), environment.get_template(f"{template}.html")

    def valued_names(self, template: str) -> frozenset[str] | None:
        """The context names the pair ``template`` uses whole, not only prints (template_shapes.py)."""
        if template not in self._valued:
            # None (an include by a computed name) is an answer too, kept like the others.
            self._valued[template] = valued_names(self._environment, (f"{template}.txt", f"{template}.html"))
        return self._valued[template]

    def overridden(self, template: str, locale: str) -> TemplatePair | None:
        """The pair with the override's files in place of the built-in ones, or None without an override.
        Raises ``jinja2.TemplateError`` for an override that does not compile."""
        if self._override_environment is None:
            return None
        text_name, html_name = self._override_files(template, locale)
        if text_name is None and html_name is None:
            return None
        text, html = self.pair(template)
        environment = self._override_environment
        return (
            environment.get_template(text_name) if text_name else text,
            environment.get_template(html_name) if html_name else html,
        )

    def _override_files(self, template: str, locale: str) -> tuple[str | None, str | None]:
        key = (template, locale)
        found = self._override_names.get(key)
        if found is None:
            found = (self._override_file(template, locale, "txt"), self._override_file(template, locale, "html"))
            with self._lock:
                self._override_names[key] = found
        return found

    def _override_file(self, template: str, locale: str, suffix: str) -> str | None:
        assert self._overrides is not None
        for name in (f"{locale}/{template}.{suffix}", f"{template}.{suffix}"):
            if (self._overrides / name).is_file():
                return name
        return None

    def override_files(self) -> list[Path]:
        """Every file of the overrides folder that replaces a template."""
        if self._overrides is None:
            return []
        return sorted(path for path in self._overrides.rglob("*") if path.suffix in (".txt", ".html"))


class Transport(Protocol):
    def deliver(self, mail: Mail) -> None: ...
    def close(self) -> None: ...


class SmtpMailer:
    """Renders a named email from its template pair and hands it to the transport.

    A kind of email is two files in ``templates/``: ``<name>.txt`` (which sets
    ``subject``) and ``<name>.html``. Adding one needs no code here. Both are
    written in the context's ``locale``, else ``default_locale`` (adapters/translations.py).
    The transport is one road or the failover over several (email_service/delivery.py).
    """

    def __init__(
        self,
        sender: str,
        transport: Transport,
        templates: Templates | None = None,
        default_locale: str = "en",
    ):
        self.sender = sender
        self.transport = transport
        self.templates = templates or Templates()
        self.default_locale = default_locale
        # The built-in templates, rendered once per shape and filled in per mail.
        self._shapes = Shapes()

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        return cls(
            settings.mail_default_sender,
            SmtpConnections.from_settings(settings),
            templates=Templates(overrides=settings.email_templates_dir),
            default_locale=settings.default_locale,
        )

    def send(self, template: str, to: str, context: Mapping[str, Any]) -> None:
        if not to.isascii():
            # Without SMTPUTF8 an address must be ASCII; retrying will not change it.
            raise PermanentMailError("address or content cannot be encoded for SMTP")
        self.transport.deliver(self.render(template, to, context))

    def render(self, template: str, to: str, context: Mapping[str, Any]) -> Mail:
        context = localized(context, self.default_locale)
        if self.templates.overrides is not None:
            try:
                overridden = self.templates.overridden(template, context["locale"])
                if overridden is not None:
                    return self.compose(template, overridden, to, context)
            except (jinja2.TemplateError, LookupError) as error:
                log.error(
                    "template override broken, built-in template used",
                    extra={"template": template, "locale": context["locale"], "error": str(error)[:200]},
                )
        pair = self.templates.pair(template)
        parts = self._shapes.parts(
            template, context, functools.partial(render_parts, template, pair), self.templates.valued_names(template)
        )
        return self._mail(to, parts)

    def compose(self, template: str, pair: TemplatePair, to: str, context: Mapping[str, Any]) -> Mail:
        """The mail of one template pair, rendered with a ``localized`` context."""
        return self._mail(to, render_parts(template, pair, context))

    def _mail(self, to: str, parts: Parts) -> Mail:
        subject, body, html = parts
        return Mail(subject=subject, sender=self.sender, recipients=[to], body=body, html=html)

    def close(self) -> None:
        self.transport.close()


def render_parts(template: str, pair: TemplatePair, context: Mapping[str, Any]) -> Parts:
    """The subject, text and HTML of one template pair rendered with a ``localized`` context."""
    text_template, html_template = pair
    text = text_template.make_module(dict(context))
    subject = getattr(text, "subject", None)
    if not subject:
        raise LookupError(f"template {template}.txt sets no subject")
    return str(subject), str(text), html_template.render(context)


@dataclass
class _Kept:
    smtp: smtplib.SMTP
    used_at: float


class SmtpConnections:
    """One SMTP connection per thread, kept open between mails.

    A connection unused for ``check_after`` seconds is asked NOOP first; one
    unused for ``idle_seconds`` is closed and a new one opened (servers drop
    idle clients, and a connection nobody uses should not be held). When the
    first command of a mail on a kept connection finds it closed by the
    server, the mail goes out once more on a new one: the server had accepted
    nothing of it. Any other failure closes the connection, so the next mail
    starts clean. ``close`` (on shutdown) says QUIT on every one of them.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        idle_seconds: float,
        use_tls: bool = False,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        check_after: float = SMTP_CHECK_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        local_hostname: str | None = None,
        sign: Callable[[bytes], bytes] | None = None,
    ):
        self._sign = sign
        self._host = host
        self._port = port
        self._timeout = timeout
        self._idle_seconds = idle_seconds
        self._use_tls = use_tls
        self._use_ssl = use_ssl
        self._username = username
        self._password = password
        self._check_after = check_after
        self._clock = clock
        self._local_hostname = local_hostname
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[smtplib.SMTP] = set()
        self.opened = 0

    name = "smtp"

    @classmethod
    def from_settings(cls, settings: Settings, sign: Callable[[bytes], bytes] | None = None) -> SmtpConnections:
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            timeout=settings.smtp_timeout_seconds,
            idle_seconds=settings.smtp_idle_seconds,
            use_tls=settings.smtp_use_tls,
            use_ssl=settings.smtp_use_ssl,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            sign=sign,
        )

    def deliver(self, mail: OutgoingMail) -> None:
        try:
            # Signed here, not in the Mail: the provider roads sign with the provider's own key.
            data = mail.data if self._sign is None else self._sign(mail.data)
            self._deliver(mail, data)
        except UnicodeError:
            self._drop()
            raise PermanentMailError("address or content cannot be encoded for SMTP") from None
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as error:
            # Our login or sender is refused: a configuration problem an
            # operator fixes, not a property of this message.
            self._drop()
            raise TransientMailError(f"{type(error).__name__}: SMTP {error.smtp_code}") from None
        except smtplib.SMTPRecipientsRefused as error:
            self._drop()
            code, reply = min(error.recipients.values())
            if _dead_mailbox(code, reply):
                raise RecipientRefused(
                    f"recipient refused: SMTP {code} {_enhanced(reply) or ''}".rstrip(), transport="smtp"
                ) from None
            raise _classify(code, "recipient refused") from None
        except smtplib.SMTPResponseException as error:
            self._drop()
            raise _classify(error.smtp_code, type(error).__name__) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            self._drop()
            raise TransientMailError(type(error).__name__) from None

    def _deliver(self, mail: OutgoingMail, data: bytes) -> None:
        kept: _Kept | None = getattr(self._local, "kept", None)
        now = self._clock()
        if kept is not None:
            idle = now - kept.used_at
            if idle >= self._idle_seconds or (idle >= self._check_after and not _answers(kept.smtp)):
                self._drop()
                kept = None
        if kept is None:
            kept = self._open()
        try:
            status, reply = _command(kept.smtp, "mail", "FROM:" + envelope_address(mail.sender))
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            status, reply = SERVICE_CLOSING, b""
        if status == SERVICE_CLOSING:
            # The kept connection was closed under us (or is being closed: 421, as servers say to
            # clients idle too long); nothing of this mail was accepted: once more on a new one.
            self._drop()
            kept = self._open()
            status, reply = _command(kept.smtp, "mail", "FROM:" + envelope_address(mail.sender))
        if status != 250:
            raise smtplib.SMTPSenderRefused(status, reply, mail.sender)
        refused = {}
        for recipient in mail.recipients:
            code, answer = _command(kept.smtp, "rcpt", "TO:" + envelope_address(recipient))
            if code not in (250, 251):
                refused[recipient] = (code, answer)
        if len(refused) == len(mail.recipients):
            raise smtplib.SMTPRecipientsRefused(refused)
        code, answer = kept.smtp.data(data)
        if code != 250:
            raise smtplib.SMTPDataError(code, answer)
        kept.used_at = self._clock()

    def _open(self) -> _Kept:
        smtp: smtplib.SMTP
        local_hostname = self._local_hostname_once()
        if self._use_ssl:
            smtp = smtplib.SMTP_SSL(
                self._host,
                self._port,
                local_hostname=local_hostname,
                timeout=self._timeout,
                context=_verifying_tls_context(),
            )
        else:
            smtp = smtplib.SMTP(self._host, self._port, local_hostname=local_hostname, timeout=self._timeout)
        with self._lock:
            self._all.add(smtp)
            self.opened += 1
        kept = _Kept(smtp, self._clock())
        self._local.kept = kept
        smtp.ehlo()
        if self._use_tls:
            smtp.starttls(context=_verifying_tls_context())
            smtp.ehlo()
        if self._username and self._password:
            smtp.login(self._username, self._password)
        return kept

    def _local_hostname_once(self) -> str:
        # smtplib would ask getfqdn() (a DNS lookup) for every connection it opens.
        if self._local_hostname is None:
            import socket

            self._local_hostname = socket.getfqdn()
        return self._local_hostname

    def _drop(self) -> None:
        kept: _Kept | None = getattr(self._local, "kept", None)
        self._local.kept = None
        if kept is not None:
            self._quit(kept.smtp)

    def _quit(self, smtp: smtplib.SMTP) -> None:
        with self._lock:
            self._all.discard(smtp)
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def close(self) -> None:
        """Say QUIT on every kept connection; called once the consumer threads are done."""
        with self._lock:
            connections = list(self._all)
        for smtp in connections:
            self._quit(smtp)


def envelope_address(address: str) -> str:
    """The address as MAIL FROM and RCPT TO carry it: ``smtplib.quoteaddr``'s answer, without its parse
    of a plain address (email.utils parses every one, about a tenth of a mail's CPU in the worker)."""
    if PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _command(smtp: smtplib.SMTP, verb: str, argument: str) -> tuple[int, bytes]:
    """``smtp.mail(x)`` and ``smtp.rcpt(x)`` without options are this, with the address already quoted."""
    smtp.putcmd(verb, argument)
    return smtp.getreply()


def _answers(smtp: smtplib.SMTP) -> bool:
    try:
        return smtp.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


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


ENHANCED_STATUS = re.compile(rb"^([245]\.\d{1,3}\.\d{1,3})\b")
# RFC 3463: 5.1.x is a bad address (unknown mailbox, bad domain, moved, null MX), 5.2.1 a disabled
# mailbox. A 5.7.x (policy, our relay refusing us) or a full mailbox says nothing final about it.
DEAD_MAILBOX = re.compile(r"^5\.1\.\d+$|^5\.2\.1$")
# Without an enhanced status: no such user, user not local, mailbox name not allowed (RFC 5321).
DEAD_MAILBOX_CODES = frozenset({550, 551, 553})


def _enhanced(reply: bytes) -> str | None:
    found = ENHANCED_STATUS.match(reply.lstrip())
    return found.group(1).decode() if found else None


def _dead_mailbox(code: int, reply: bytes) -> bool:
    """Does this RCPT refusal say the address itself is dead?"""
    if not 500 <= code < 600:
        return False
    enhanced = _enhanced(reply)
    if enhanced is not None:
        return DEAD_MAILBOX.match(enhanced) is not None
    return code in DEAD_MAILBOX_CODES


def _classify(smtp_code: int, what: str) -> Exception:
    if 400 <= smtp_code < 500:
        return TransientMailError(f"{what}: SMTP {smtp_code}")
    return PermanentMailError(f"{what}: SMTP {smtp_code}")
