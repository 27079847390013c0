"""The job the project's peers do per message, written as plainly as a careful user of
redis-py and smtplib would: store the pending registration in one Redis round
trip, then mail the code with a text and an HTML part over an SMTP connection
kept open between mails (or, to show what that is worth, a new one per mail).

The raw pika consumer (bench/raw_consumer.py) and the Celery peer
(bench/celery_peer.py) both run this, configured from the same environment
variables as the email worker, so the three systems are pointed at the same
servers by one environment.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import jinja2
import redis

from common.settings import FALSE_WORDS, TRUE_WORDS
from email_service.adapters.translations import install_i18n

TEMPLATES = Path(__file__).resolve().parent.parent / "email_service" / "templates"


class _Environment:
    """The peers' few settings, read as the services read theirs: an empty value means unset."""

    def __init__(self, env: Mapping[str, str]):
        self._env = env

    def text(self, name: str, default: str) -> str:
        return self._env.get(name) or default

    def optional(self, name: str) -> str | None:
        return self._env.get(name) or None

    def number(self, name: str, default: int) -> int:
        value = int(self.text(name, str(default)))
        if value < 1:
            raise ValueError(f"{name} must be at least 1")
        return value

    def flag(self, name: str, default: bool) -> bool:
        word = self.text(name, "").strip().lower()
        if not word:
            return default
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise ValueError(f"{name} must be true or false, got {word!r}")
        return word in TRUE_WORDS


@dataclass(frozen=True)
class PeerConfig:
    rabbitmq_url: str
    redis_url: str
    key_prefix: str
    queue: str
    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_username: str | None
    smtp_password: str | None
    smtp_cafile: str | None
    sender: str
    code_key: bytes
    ttl_seconds: int
    reuse_connection: bool
    prefetch: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PeerConfig:
        read = _Environment(os.environ if env is None else env)
        return cls(
            rabbitmq_url=read.text("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F"),
            redis_url=read.text("REDIS_URL", "redis://localhost:6379/0"),
            key_prefix=read.text("REDIS_KEY_PREFIX", "bench-peer"),
            queue=read.text("BENCH_QUEUE", "bench.peer"),
            smtp_host=read.text("SMTP_HOST", "localhost"),
            smtp_port=read.number("SMTP_PORT", 1025),
            smtp_starttls=read.flag("SMTP_USE_TLS", False),
            smtp_username=read.optional("SMTP_USERNAME"),
            smtp_password=read.optional("SMTP_PASSWORD"),
            # The worker trusts a private CA through OpenSSL's SSL_CERT_FILE; the peers read the same file.
            smtp_cafile=read.optional("SSL_CERT_FILE"),
            sender=read.text("MAIL_DEFAULT_SENDER", "no-reply@localhost"),
            code_key=read.text("CODE_HMAC_KEY", "bench-peer-code-key-0123456789abcdef").encode(),
            ttl_seconds=read.number("CODE_TTL_SECONDS", 600),
            reuse_connection=read.flag("BENCH_SMTP_REUSE", True),
            prefetch=read.number("BENCH_PREFETCH", 16),
        )


def _templates() -> tuple[jinja2.Template, jinja2.Template]:
    # The project's own templates, so every system sends the same bytes; compiled once.
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape())
    install_i18n(environment)  # in English, the templates' own language
    return environment.get_template("verify_email.txt"), environment.get_template("verify_email.html")


class MailJob:
    """One per thread (or process): it owns a Redis client and, when reusing, an SMTP connection."""

    def __init__(self, config: PeerConfig, client: redis.Redis | None = None):
        self._config = config
        self._redis = client or redis.Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._text, self._html = _templates()
        self._tls = ssl.create_default_context(cafile=config.smtp_cafile) if config.smtp_starttls else None
        self._smtp: smtplib.SMTP | None = None

    def run(self, message_id: str, user_id: str, email: str, name: str | None, requested_at: float) -> None:
        config = self._config
        code = f"{int.from_bytes(_mac(config.code_key, message_id)[:8], 'big') % 1_000_000:06d}"
        key = f"{config.key_prefix}:pending:{hashlib.sha256(email.encode()).hexdigest()}"
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "user_id": user_id,
                    "code_digest": _mac(config.code_key, f"{email}:{code}").hex(),
                    "attempts": 0,
                    "message_id": message_id,
                    "requested_at": repr(requested_at),
                },
            )
            pipe.expire(key, config.ttl_seconds)
            pipe.execute()
        self._send(self._message(email, name, code))

    def _message(self, email: str, name: str | None, code: str) -> EmailMessage:
        context = {"name": name, "code": code, "validity_seconds": self._config.ttl_seconds}
        text = self._text.make_module(context)  # the text template sets the subject
        message = EmailMessage()
        message["Subject"] = str(text.subject)  # type: ignore[attr-defined]  # exported by the template
        message["From"] = self._config.sender
        message["To"] = email
        message.set_content(str(text))
        message.add_alternative(self._html.render(context), subtype="html")
        return message

    def _send(self, message: EmailMessage) -> None:
        if not self._config.reuse_connection:
            with self._connect() as smtp:
                smtp.send_message(message)
            return
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(message)
        except (smtplib.SMTPServerDisconnected, OSError):
            # A kept connection the server dropped: open another, once.
            self._drop_connection()
            self._smtp = self._connect()
            self._smtp.send_message(message)

    def _connect(self) -> smtplib.SMTP:
        config = self._config
        smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, local_hostname="bench-peer", timeout=10)
        if self._tls is not None:
            smtp.starttls(context=self._tls)
        if config.smtp_username and config.smtp_password:
            smtp.login(config.smtp_username, config.smtp_password)
        return smtp

    def close(self) -> None:
        self._drop_connection()
        self._redis.close()

    def _drop_connection(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def _mac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()
