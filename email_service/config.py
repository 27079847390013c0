"""The worker's settings, read once from the environment (see ../shared/CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from common.messaging.topology import QueueSettings, read_topology
from common.settings import Reader, SettingsError, environment


@dataclass(frozen=True)
class Settings(QueueSettings):
    app_env: str
    redis_url: str
    redis_key_prefix: str
    rabbitmq_url: str
    account_creation_queue: str
    confirm_email_code_queue: str
    account_confirmed_queue: str
    smtp_host: str
    smtp_port: int
    smtp_username: str | None
    smtp_password: str | None
    smtp_use_tls: bool
    smtp_use_ssl: bool
    smtp_timeout_seconds: float
    mail_default_sender: str
    code_ttl_seconds: int
    code_max_attempts: int
    max_codes_per_hour: int
    max_codes_per_day: int
    code_hmac_key: str | None
    public_base_url: str
    retry_delays_seconds: tuple[int, ...]
    prefetch: int
    consumer_threads: int
    metrics_host: str
    metrics_port: int
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        read = Reader(environment(env))
        topology = read_topology(read)
        app_env = read.str("APP_ENV", "production")
        development = app_env == "development"
        if read.bool("SMTP_USE_TLS", False) and read.bool("SMTP_USE_SSL", False):
            raise SettingsError("SMTP_USE_TLS (STARTTLS) and SMTP_USE_SSL (implicit TLS) exclude each other")
        return cls(
            app_env=app_env,
            redis_url=read.str("REDIS_URL", "redis://localhost:6379/0"),
            redis_key_prefix=read.str("REDIS_KEY_PREFIX", "email_service"),
            rabbitmq_url=read.str("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F"),
            account_creation_queue=topology.account_creation,
            confirm_email_code_queue=topology.confirm_email_code,
            account_confirmed_queue=topology.account_confirmed,
            smtp_host=read.str("SMTP_HOST", "localhost"),
            smtp_port=read.int("SMTP_PORT", 1025, minimum=1, maximum=65535),
            smtp_username=read.str("SMTP_USERNAME"),
            smtp_password=read.str("SMTP_PASSWORD"),
            smtp_use_tls=read.bool("SMTP_USE_TLS", False),
            smtp_use_ssl=read.bool("SMTP_USE_SSL", False),
            smtp_timeout_seconds=read.float("SMTP_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            mail_default_sender=read.str("MAIL_DEFAULT_SENDER", "no-reply@localhost"),
            code_ttl_seconds=read.int("CODE_TTL_SECONDS", 600, minimum=1),
            code_max_attempts=read.int("CODE_MAX_ATTEMPTS", 5, minimum=1),
            max_codes_per_hour=read.int("MAX_CODES_PER_HOUR", 5, minimum=1),
            max_codes_per_day=read.int("MAX_CODES_PER_DAY", 10, minimum=1),
            # Unset: the workers share a random key kept in Redis (email_service.adapters.code_key).
            code_hmac_key=read.optional_secret("CODE_HMAC_KEY", development),
            public_base_url=_base_url(read.str("PUBLIC_BASE_URL", "http://localhost:8000")),
            retry_delays_seconds=topology.retry_delays,
            prefetch=read.int("WORKER_PREFETCH", 4, minimum=1),
            consumer_threads=read.int("WORKER_THREADS", 4, minimum=1, maximum=64),
            metrics_host=read.str("WORKER_METRICS_HOST", "127.0.0.1"),
            metrics_port=read.int("WORKER_METRICS_PORT", 9100, minimum=0, maximum=65535),
            log_level=read.str("LOG_LEVEL", "INFO").upper(),
        )


def _base_url(value: str) -> str:
    """The base of the links in emails: an absolute http(s) URL, without a trailing slash."""
    if not value.startswith(("http://", "https://")) or any(char.isspace() for char in value):
        raise SettingsError(f"PUBLIC_BASE_URL must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")
