"""The worker's settings, read from the environment: each field is the variable of its name in capitals.

docs/operations.md ("Settings") lists every one with its default and what it does; those both services read
(the servers, the queue names) are in common/settings.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from common.settings import Check, Flag, Parse, Port, SecretStr, ServiceSettings, cross_check, key_error, setting

MAIL_TRANSPORT_NAMES = ("smtp", "ses", "postmark")


def _without_trailing_slash(value: str) -> str:
    return value.rstrip("/")


def _transport_names(value: object) -> object:
    if isinstance(value, str):
        return [name.strip().lower() for name in value.split(",") if name.strip()]
    return value


def _known_transports(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in MAIL_TRANSPORT_NAMES]
    if unknown:
        raise ValueError(f"unknown transport(s) {', '.join(unknown)}; known: {', '.join(MAIL_TRANSPORT_NAMES)}")
    if not names:
        raise ValueError("at least one transport")
    if len(set(names)) != len(names):
        raise ValueError("a transport named twice")
    return names


class Settings(ServiceSettings):
    redis_key_prefix: str = "email_service"
    smtp_host: str = "localhost"
    smtp_port: int = setting(1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_use_tls: Flag = False
    smtp_use_ssl: Flag = False
    smtp_timeout_seconds: float = setting(10.0, ge=0.1)
    # A kept SMTP connection unused this long is closed and a new one opened for the next mail.
    smtp_idle_seconds: float = setting(30.0, ge=0)
    mail_default_sender: str = "no-reply@localhost"
    # The roads out, tried in this order for each mail (email_service/delivery.py, docs/mail.md).
    mail_transports: Annotated[list[str], Parse(_transport_names), Check(_known_transports)] = setting(
        default_from=lambda _: ["smtp"]
    )
    mail_transport_failures_to_open: int = setting(5, ge=1)
    mail_transport_cooldown_seconds: float = setting(30.0, gt=0)
    # Amazon SES v2: credentials come from the AWS default chain (environment, profile, role).
    ses_region: str = "us-east-1"
    ses_endpoint_url: str | None = None
    postmark_server_token: SecretStr | None = None
    postmark_api_url: Annotated[str, setting(pattern=r"^https?://\S+$"), Check(_without_trailing_slash)] = (
        "https://api.postmarkapp.com"
    )
    mail_http_timeout_seconds: float = setting(10.0, ge=0.1)
    # With all three set, every mail sent over SMTP carries a DKIM signature.
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key_file: Path | None = None
    # Operator templates replacing built-in ones (docs/mail.md); checked by `templates check`.
    email_templates_dir: Path | None = None
    code_max_attempts: int = setting(5, ge=1)
    max_codes_per_hour: int = setting(5, ge=1)
    max_codes_per_day: int = setting(10, ge=1)
    # Wrong codes one account may be given in any 24 hours, over every purpose: the guessing bound per
    # account (docs/security.md). Devices the account signed in from are not refused by it.
    code_guesses_per_account_per_day: int = setting(50, ge=1)
    # Unset: the workers share a random key kept in Redis (email_service.adapters.code_key).
    code_hmac_key: SecretStr | None = None
    # The base of the links in emails: an absolute http(s) URL, kept without a trailing slash.
    public_base_url: Annotated[str, setting(pattern=r"^https?://\S+$"), Check(_without_trailing_slash)] = (
        "http://localhost:8000"
    )
    worker_prefetch: int = setting(4, ge=1)
    worker_threads: int = setting(4, ge=1, le=64)
    # Processes `python -m email_service` runs: unset, one per CPU (one process is bound by its GIL).
    worker_processes: int = setting(default_from=lambda _: os.cpu_count() or 1, ge=1, le=64)
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: Port = 9100
    # Replicas that must hold a stored code before it is mailed (WAIT), and how long to wait for them.
    redis_wait_replicas: int = setting(default_from=lambda data: 1 if data.get("redis_sentinels") else 0, ge=0)
    redis_wait_timeout_ms: int = setting(500, ge=1, le=60_000)

    def for_process(self, index: int) -> Settings:
        """The settings of the supervisor's child ``index``: one process, its own metrics port."""
        port = self.worker_metrics_port + index if self.worker_metrics_port else 0
        return self.replaced(worker_processes=1, worker_metrics_port=port)

    @cross_check
    def _refuse_conflicts(self) -> None:
        refused = key_error("CODE_HMAC_KEY", self.code_hmac_key, self.development, required=False)
        if refused:
            raise ValueError(refused)
        if self.smtp_use_tls and self.smtp_use_ssl:
            raise ValueError("SMTP_USE_TLS (STARTTLS) and SMTP_USE_SSL (implicit TLS) exclude each other")
        if "postmark" in self.mail_transports and self.postmark_server_token is None:
            raise ValueError("MAIL_TRANSPORTS names postmark: set POSTMARK_SERVER_TOKEN")
        dkim = (self.dkim_domain, self.dkim_selector, self.dkim_private_key_file)
        if any(value is not None for value in dkim) and not all(value is not None for value in dkim):
            raise ValueError("DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE go together")
