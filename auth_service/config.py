"""The auth service's settings, read from the environment: each field is the variable of its name in capitals.

docs/operations.md ("Settings") lists every one with its default and what it does; those both services read
(the servers, the queue names) are in common/settings.py.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many

from common.settings import (
    Check,
    FilePath,
    Flag,
    Parse,
    Port,
    SecretStr,
    ServiceSettings,
    cross_check,
    default_redis_uri,
    key_error,
    setting,
)

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


def _domains(value: object) -> object:
    return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value


# "a.example,b.example": a list in its own notation.
DomainList = Annotated[tuple[str, ...], Parse(_domains)]

# Request limits in flask-limiter's notation, per client IP or per address (docs/security.md).
RateLimit = Annotated[str, Check(_limits)]


def _peer_address(value: str | None) -> str | None:
    if value is None or value == ANY_PEER:
        return value
    try:
        # The form the server reports the peer in, so that "::0001" still matches "::1".
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError("must be one IP address or *") from None


def _names(value: object) -> object:
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return value


def _jwt_secret_default(data: dict[str, Any]) -> SecretStr:
    # Unset, only development gets a fixed key; elsewhere the empty key is refused below.
    return SecretStr(DEVELOPMENT_JWT_SECRET if data.get("app_env") == "development" else "")


class Settings(ServiceSettings):
    mongo_uri: str = setting("mongodb://localhost:27017", repr=False)
    mongo_db: str = "auth"
    jwt_secret: SecretStr = setting(default_from=_jwt_secret_default)
    jwt_ttl_seconds: int = setting(900, ge=1)
    # ES256, EdDSA, RS256: a private key signs, the published JWKS verifies; HS256: JWT_SECRET, nothing published.
    jwt_algorithm: Literal["ES256", "EdDSA", "RS256", "HS256"] = "ES256"
    jwt_signing_keys_file: Path | None = None
    # Days, fractions allowed (a test rotates in seconds).
    jwt_key_rotation_days: float = setting(30.0, gt=0, le=3650)
    jwks_max_age_seconds: int = setting(600, ge=0, le=86400)
    session_max_age_seconds: int = setting(90 * 86400, ge=60)
    jwt_issuer: str = "auth-service"
    jwt_audience: str = "mobile-app"
    refresh_ttl_seconds: int = setting(30 * 24 * 3600, ge=60)
    # Bounded: a long grace would let a stolen token be used alongside its owner unnoticed.
    refresh_reuse_grace_seconds: int = setting(10, ge=0, le=300)
    bcrypt_rounds: int = setting(12, ge=4, le=31)
    allow_weak_bcrypt: Flag = False
    resend_cooldown_seconds: int = setting(60, ge=0)
    failed_login_warning_threshold: int = setting(3, ge=1)
    lockout_threshold: int = setting(10, ge=1)
    lockout_seconds: int = setting(900, ge=1)
    # Life of the "this wasn't me" link of a security notice (7 days).
    not_me_ttl_seconds: int = setting(7 * 86400, ge=60)
    # How long the old mailbox may undo a confirmed address change (and the left address stays reserved).
    email_undo_window_seconds: int = setting(3 * 86400, ge=1)
    # A pending account not confirmed within this time is deleted.
    unverified_ttl_seconds: int = setting(7 * 86400, ge=1)
    # A device that passed the emailed second factor is not asked again for this long.
    mfa_trust_days: int = setting(30, ge=0, le=3650)
    # Between a confirmed deletion and the erasure, during which the notice's link restores the account (0: at once).
    account_deletion_grace_seconds: int = setting(7 * 86400, ge=0, le=365 * 86400)
    # How long each account's security activity is kept (GET /auth/account/activity, the admin audit).
    audit_retention_days: int = setting(90, ge=1, le=3650)
    ratelimit_enabled: Flag = True
    ratelimit_storage_uri: str = setting(default_from=default_redis_uri, repr=False)
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
    ratelimit_account_pages_per_ip: RateLimit = "60/minute;600/hour"
    # Deleting and exporting the account: a password is checked, as at password change.
    ratelimit_account_password_per_ip: RateLimit = "10/minute;100/hour"  # noqa: S105 (a limit, not a secret)
    # Actions that mail the account's own address a notice (an address change asked for, the second
    # factor switched): one quota per account, so a session cannot flood the owner's mailbox.
    ratelimit_notices_per_account: RateLimit = "5/hour;20/day"
    ratelimit_refresh_per_ip: RateLimit = "60/minute;1000/hour"
    ratelimit_refresh_per_token: RateLimit = "10/minute"  # noqa: S105 (a limit, not a secret)
    ratelimit_logout_per_ip: RateLimit = "30/minute;300/hour"
    ratelimit_logout_per_token: RateLimit = "10/minute"  # noqa: S105 (a limit, not a secret)
    ratelimit_password_change_per_ip: RateLimit = "10/minute;100/hour"  # noqa: S105 (a limit, not a secret)
    ratelimit_password_change_failures_per_account: RateLimit = "5/minute;20/day"  # noqa: S105 (a limit, not a secret)
    # A limit-store call slower than this is a hung store: the request goes on without it.
    ratelimit_store_timeout_seconds: float = setting(0.25, ge=0.01)
    # Sign-up abuse (docs/security.md): breached passwords by k-anonymity, CAPTCHA, disposable addresses.
    pwned_passwords_url: str | None = setting(None, pattern=r"^https?://")
    pwned_passwords_timeout_seconds: float = setting(2.0, gt=0, le=30)
    # Past the timeout the check is skipped and counted; true refuses the password (503) instead.
    pwned_passwords_fail_closed: Flag = False
    # Ranges kept a day each, least recently used dropped past this count (some 16 KB each).
    pwned_passwords_cache_ranges: int = setting(1024, ge=0, le=100_000)
    captcha_provider: Literal["turnstile", "hcaptcha"] | None = None
    captcha_secret: SecretStr | None = None
    # Unset: the provider's own siteverify URL.
    captcha_verify_url: str | None = setting(None, pattern=r"^https?://")
    captcha_timeout_seconds: float = setting(5.0, gt=0, le=30)
    block_disposable_addresses: Flag = False
    # The operator's own lists, beside the maintained one; a domain covers its subdomains, allowing wins.
    blocked_email_domains: DomainList = ()
    blocked_email_domains_file: FilePath | None = None
    allowed_email_domains: DomainList = ()
    allowed_email_domains_file: FilePath | None = None
    auth_host: str = "127.0.0.1"
    auth_port: Port = 8000
    auth_threads: int = setting(32, ge=2, le=256)
    # Fewer than the request threads, so that waiting confirms always leave some to everything else.
    confirm_max_waiting: int = setting(default_from=lambda data: data["auth_threads"] // 2, ge=1)
    auth_connection_limit: int = setting(1000, ge=10, le=100_000)
    auth_channel_timeout_seconds: int = setting(30, ge=1)
    auth_cleanup_interval_seconds: int = setting(10, ge=1)
    # The admin API: a listener of its own, never on AUTH_PORT (docs/admin.md).
    admin_host: str = "127.0.0.1"
    admin_port: Port = 8001
    admin_threads: int = setting(4, ge=1, le=64)
    # One line per key (name, scopes, hash); unset or empty: every admin request is 401.
    admin_keys_file: Path | None = None
    ratelimit_admin_per_key: RateLimit = "600/minute;20000/hour"
    # Requests without a good key, per IP: a flood of 401s costs little, but is bounded all the same.
    ratelimit_admin_per_ip: RateLimit = "60/minute"
    confirm_wait_seconds: float = setting(5.0, ge=0.1)
    publish_timeout_seconds: float = setting(3.0, ge=0.1)
    max_body_bytes: int = setting(16 * 1024, ge=1024)
    proxy_hops: int = setting(0, ge=0, le=5)
    # The one peer whose X-Forwarded-* headers are believed: loopback unless named, nobody without PROXY_HOPS.
    trusted_proxy: Annotated[str | None, Check(_peer_address)] = setting(
        default_from=lambda data: LOOPBACK if data.get("proxy_hops") else None
    )

    # Webhooks (docs/webhooks.md): the dispatcher runs beside the API unless false (then `python -m
    # auth_service webhooks` runs it apart).
    webhook_dispatcher: Flag = True
    webhook_timeout_seconds: float = setting(10.0, gt=0, le=300)
    # Days, fractions allowed (a test disables an endpoint in seconds).
    webhook_disable_after_days: float = setting(5.0, gt=0, le=365)
    # Endpoints on loopback, private or link-local addresses: development and tests only.
    webhook_allow_private_urls: Flag = False
    # Attempts in flight to one endpoint at once, each on a lane thread of that endpoint's own.
    webhook_endpoint_concurrency: int = setting(4, ge=1, le=64)
    # Where `python -m auth_service webhooks` serves /metrics (0: nowhere); beside the API, auth's /metrics has them.
    webhooks_metrics_host: str = "127.0.0.1"
    webhooks_metrics_port: Port = 9102

    # Mail reports (docs/mail.md). Postmark's webhook sends these in HTTP basic auth; unset, every
    # report is refused (401).
    postmark_webhook_username: str | None = None
    postmark_webhook_password: SecretStr | None = None
    # The SNS topics SES reports to: a message of any other topic is refused, however well signed
    # (anyone can have SNS sign messages of a topic of their own). Unset: every SNS message is refused.
    ses_sns_topic_arns: Annotated[frozenset[str], Parse(_names)] = frozenset()
    # Tests only: this PEM certificate signs SNS messages, and none is fetched from Amazon.
    sns_trusted_certificate_file: Path | None = None

    @property
    def ratelimit_store_options(self) -> dict[str, float]:
        """Redis client options for RATELIMIT_STORAGE_URI (limit counters, resend cooldowns)."""
        timeout = self.ratelimit_store_timeout_seconds
        return {"socket_timeout": timeout, "socket_connect_timeout": timeout}

    @cross_check
    def _refuse_conflicts(self) -> None:
        refused = key_error("JWT_SECRET", self.jwt_secret, self.development, required=True)
        if refused:
            raise ValueError(refused)
        if self.bcrypt_rounds < 10 and not (self.development or self.allow_weak_bcrypt):
            raise ValueError("BCRYPT_ROUNDS below 10 needs APP_ENV=development or ALLOW_WEAK_BCRYPT=true")
        if self.confirm_max_waiting >= self.auth_threads:
            raise ValueError("CONFIRM_MAX_WAITING must be fewer than AUTH_THREADS")
        if self.failed_login_warning_threshold >= self.lockout_threshold:
            raise ValueError("FAILED_LOGIN_WARNING_THRESHOLD must be below LOCKOUT_THRESHOLD")
        if self.jwt_algorithm == "HS256" and self.jwt_signing_keys_file is not None:
            raise ValueError(
                "JWT_SIGNING_KEYS_FILE holds private keys for ES256, EdDSA or RS256; HS256 signs with JWT_SECRET"
            )
        if self.captcha_provider is not None and not (self.captcha_secret and self.captcha_secret.get_secret_value()):
            raise ValueError("CAPTCHA_PROVIDER needs CAPTCHA_SECRET, the provider's secret key")
        if self.captcha_provider is None and (self.captcha_secret is not None or self.captcha_verify_url):
            raise ValueError("CAPTCHA_SECRET and CAPTCHA_VERIFY_URL need CAPTCHA_PROVIDER (turnstile or hcaptcha)")
        if self.admin_port and self.admin_port == self.auth_port:
            raise ValueError("ADMIN_PORT must differ from AUTH_PORT: the admin API is never served on the public port")
        if self.trusted_proxy is not None and self.proxy_hops == 0:
            raise ValueError("TRUSTED_PROXY needs PROXY_HOPS, the number of proxies in front of the API")
