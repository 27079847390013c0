"""The auth service's settings (see ../shared/CONTRACT.md and common/settings.py)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from limits import parse_many
from pydantic import AfterValidator, Field, SecretStr, model_validator

from common.settings import Flag, Port, ServiceSettings, default_redis_uri, key_error

DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-do-not-use-in-production"  # noqa: S105 (refused outside APP_ENV=development)
# waitress compares the peer address with one string; "*" trusts any peer (only where nothing else can reach the port).
ANY_PEER = "*"
LOOPBACK = "127.0.0.1"


def _limits(value: str) -> str:
    try:
        parse_many(value)
    except ValueError:
        raise ValueError("must be limits like '10/minute;100/hour'") from None
    return value


# Request limits in flask-limiter's notation, per client IP or per address (docs/security.md).
RateLimit = Annotated[str, AfterValidator(_limits)]


def _peer_address(value: str | None) -> str | None:
    if value is None or value == ANY_PEER:
        return value
    try:
        # The form the server reports the peer in, so that "::0001" still matches "::1".
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError("must be one IP address or *") from None


def _jwt_secret_default(data: dict[str, Any]) -> SecretStr:
    # Unset, only development gets a fixed key; elsewhere the empty key is refused below.
    return SecretStr(DEVELOPMENT_JWT_SECRET if data.get("app_env") == "development" else "")


class Settings(ServiceSettings):
    mongo_uri: str = Field("mongodb://localhost:27017", repr=False)
    mongo_db: str = "auth"
    jwt_secret: SecretStr = Field(default_factory=_jwt_secret_default)
    jwt_ttl_seconds: int = Field(900, ge=1)
    jwt_issuer: str = "auth-service"
    jwt_audience: str = "mobile-app"
    refresh_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)
    # Bounded: a long grace would let a stolen token be used alongside its owner unnoticed.
    refresh_reuse_grace_seconds: int = Field(10, ge=0, le=300)
    bcrypt_rounds: int = Field(12, ge=4, le=31)
    allow_weak_bcrypt: Flag = False
    resend_cooldown_seconds: int = Field(60, ge=0)
    failed_login_warning_threshold: int = Field(3, ge=1)
    lockout_threshold: int = Field(10, ge=1)
    lockout_seconds: int = Field(900, ge=1)
    # Life of the "this wasn't me" link of a security notice (7 days).
    not_me_ttl_seconds: int = Field(7 * 86400, ge=60)
    # How long the old mailbox may undo a confirmed address change (and the left address stays reserved).
    email_undo_window_seconds: int = Field(3 * 86400, ge=1)
    # A pending account not confirmed within this time is deleted.
    unverified_ttl_seconds: int = Field(7 * 86400, ge=1)
    # A device that passed the emailed second factor is not asked again for this long.
    mfa_trust_days: int = Field(30, ge=0, le=3650)
    ratelimit_enabled: Flag = True
    ratelimit_storage_uri: str = Field(default_factory=default_redis_uri, repr=False)
    ratelimit_key_prefix: str = "auth-ratelimit"
    ratelimit_register_per_ip: RateLimit = "10/minute;100/hour"
    ratelimit_register_per_address: RateLimit = "5/hour"
    ratelimit_confirm_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_confirm_per_address: RateLimit = "10/minute;50/day"
    ratelimit_resend_per_ip: RateLimit = "10/minute;100/hour"
    ratelimit_resend_per_address: RateLimit = "10/hour"
    ratelimit_login_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_login_failures_per_address: RateLimit = "10/minute;100/day"
    # Reset and address-change codes follow the verification code's guessing bound (docs/security.md).
    ratelimit_forgot_per_ip: RateLimit = "10/minute;100/hour"
    ratelimit_forgot_per_address: RateLimit = "10/hour"
    ratelimit_reset_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_reset_per_address: RateLimit = "10/minute;50/day"
    ratelimit_email_change_per_ip: RateLimit = "10/minute;100/hour"
    ratelimit_email_change_per_address: RateLimit = "10/hour"
    ratelimit_email_confirm_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_email_confirm_per_account: RateLimit = "10/minute;50/day"
    ratelimit_verify_link_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_verify_link_per_account: RateLimit = "10/minute;50/day"
    # Sign-in by emailed code: asking as resend and forgot, guessing as confirm (docs/security.md).
    ratelimit_login_code_per_ip: RateLimit = "10/minute;100/hour"
    ratelimit_login_code_per_address: RateLimit = "10/hour"
    ratelimit_login_code_verify_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_login_code_verify_per_address: RateLimit = "10/minute;50/day"
    ratelimit_login_verify_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_login_verify_per_account: RateLimit = "10/minute;50/day"
    ratelimit_mfa_per_ip: RateLimit = "10/minute;100/hour"
    ratelimit_refresh_per_ip: RateLimit = "60/minute;1000/hour"
    ratelimit_refresh_per_token: RateLimit = "10/minute"  # noqa: S105 (a limit, not a secret)
    ratelimit_logout_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_logout_per_token: RateLimit = "10/minute"  # noqa: S105 (a limit, not a secret)
    ratelimit_password_change_per_ip: RateLimit = "10/minute;100/hour"  # noqa: S105 (a limit, not a secret)
    ratelimit_password_change_failures_per_account: RateLimit = "5/minute;20/day"  # noqa: S105 (a limit, not a secret)
    # A limit-store call slower than this is a hung store: the request goes on without it.
    ratelimit_store_timeout_seconds: float = Field(0.25, ge=0.01)
    auth_host: str = "127.0.0.1"
    auth_port: Port = 8000
    auth_threads: int = Field(32, ge=2, le=256)
    # Fewer than the request threads, so that waiting confirms always leave some to everything else.
    confirm_max_waiting: int = Field(default_factory=lambda data: data["auth_threads"] // 2, ge=1)
    auth_connection_limit: int = Field(1000, ge=10, le=100_000)
    auth_channel_timeout_seconds: int = Field(30, ge=1)
    auth_cleanup_interval_seconds: int = Field(10, ge=1)
    confirm_wait_seconds: float = Field(5.0, ge=0.1)
    publish_timeout_seconds: float = Field(3.0, ge=0.1)
    max_body_bytes: int = Field(16 * 1024, ge=1024)
    proxy_hops: int = Field(0, ge=0, le=5)
    # The one peer whose X-Forwarded-* headers are believed: loopback unless named, nobody without PROXY_HOPS.
    trusted_proxy: Annotated[str | None, AfterValidator(_peer_address)] = Field(
        default_factory=lambda data: LOOPBACK if data.get("proxy_hops") else None
    )

    @property
    def ratelimit_store_options(self) -> dict[str, float]:
        """Redis client options for RATELIMIT_STORAGE_URI (limit counters, resend cooldowns)."""
        timeout = self.ratelimit_store_timeout_seconds
        return {"socket_timeout": timeout, "socket_connect_timeout": timeout}

    @model_validator(mode="after")
    def _refuse_conflicts(self) -> Settings:
        refused = key_error("JWT_SECRET", self.jwt_secret, self.development, required=True)
        if refused:
            raise ValueError(refused)
        if self.bcrypt_rounds < 10 and not (self.development or self.allow_weak_bcrypt):
            raise ValueError("BCRYPT_ROUNDS below 10 needs APP_ENV=development or ALLOW_WEAK_BCRYPT=true")
        if self.confirm_max_waiting >= self.auth_threads:
            raise ValueError("CONFIRM_MAX_WAITING must be fewer than AUTH_THREADS")
        if self.failed_login_warning_threshold >= self.lockout_threshold:
            raise ValueError("FAILED_LOGIN_WARNING_THRESHOLD must be below LOCKOUT_THRESHOLD")
        if self.trusted_proxy is not None and self.proxy_hops == 0:
            raise ValueError("TRUSTED_PROXY needs PROXY_HOPS, the number of proxies in front of the API")
        return self
