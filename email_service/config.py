"""The worker's settings, read from the environment: each field is the variable of its name in capitals.

docs/operations.md ("Settings") lists every one with its default and what it does; those both services read
(the servers, the queue names) are in common/settings.py.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, model_validator

from common.settings import Flag, Port, ServiceSettings, key_error


def _without_trailing_slash(value: str) -> str:
    return value.rstrip("/")


class Settings(ServiceSettings):
    redis_key_prefix: str = "email_service"
    smtp_host: str = "localhost"
    smtp_port: int = Field(1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_use_tls: Flag = False
    smtp_use_ssl: Flag = False
    smtp_timeout_seconds: float = Field(10.0, ge=0.1)
    # A kept SMTP connection unused this long is closed and a new one opened for the next mail.
    smtp_idle_seconds: float = Field(30.0, ge=0)
    mail_default_sender: str = "no-reply@localhost"
    code_max_attempts: int = Field(5, ge=1)
    max_codes_per_hour: int = Field(5, ge=1)
    max_codes_per_day: int = Field(10, ge=1)
    # Unset: the workers share a random key kept in Redis (email_service.adapters.code_key).
    code_hmac_key: SecretStr | None = None
    # The base of the links in emails: an absolute http(s) URL, kept without a trailing slash.
    public_base_url: Annotated[str, Field(pattern=r"^https?://\S+$"), AfterValidator(_without_trailing_slash)] = (
        "http://localhost:8000"
    )
    worker_prefetch: int = Field(4, ge=1)
    worker_threads: int = Field(4, ge=1, le=64)
    # Processes `python -m email_service` runs: unset, one per CPU (one process is bound by its GIL).
    worker_processes: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: Port = 9100
    # Replicas that must hold a stored code before it is mailed (WAIT), and how long to wait for them.
    redis_wait_replicas: int = Field(default_factory=lambda data: 1 if data.get("redis_sentinels") else 0, ge=0)
    redis_wait_timeout_ms: int = Field(500, ge=1, le=60_000)

    def for_process(self, index: int) -> Settings:
        """The settings of the supervisor's child ``index``: one process, its own metrics port."""
        port = self.worker_metrics_port + index if self.worker_metrics_port else 0
        return self.model_copy(update={"worker_processes": 1, "worker_metrics_port": port})

    @model_validator(mode="after")
    def _refuse_conflicts(self) -> Settings:
        refused = key_error("CODE_HMAC_KEY", self.code_hmac_key, self.development, required=False)
        if refused:
            raise ValueError(refused)
        if self.smtp_use_tls and self.smtp_use_ssl:
            raise ValueError("SMTP_USE_TLS (STARTTLS) and SMTP_USE_SSL (implicit TLS) exclude each other")
        return self
