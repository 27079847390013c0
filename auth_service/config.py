"""The auth service's settings, read once from the environment (see ../shared/CONTRACT.md)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from limits import parse_many

from common.messaging.topology import QueueSettings, read_topology
from common.settings import Reader, SettingsError, environment

DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-do-not-use-in-production"  # noqa: S105 (refused outside APP_ENV=development)
# waitress compares the peer address with one string; "*" trusts any peer (only where nothing else can reach the port).
ANY_PEER = "*"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class RateLimits:
    """Request limits per endpoint, in flask-limiter's notation ("10/minute;100/hour").

    Each endpoint is limited per client IP and per address (the normalized email
    of the body). See docs/security.md for why these numbers.
    """

    register_per_ip: str = "10/minute;100/hour"
    register_per_address: str = "5/hour"
    confirm_per_ip: str = "30/minute;300/hour"
    confirm_per_address: str = "10/minute;50/day"
    resend_per_ip: str = "10/minute;100/hour"
    resend_per_address: str = "10/hour"
    login_per_ip: str = "30/minute;300/hour"
    login_failures_per_address: str = "10/minute;100/day"
    # Reset and address-change codes follow the verification code's guessing bound (docs/security.md).
    forgot_per_ip: str = "10/minute;100/hour"
    forgot_per_address: str = "10/hour"
    reset_per_ip: str = "30/minute;300/hour"
    reset_per_address: str = "10/minute;50/day"
    email_change_per_ip: str = "10/minute;100/hour"
    email_change_per_address: str = "10/hour"
    email_confirm_per_ip: str = "30/minute;300/hour"
    email_confirm_per_account: str = "10/minute;50/day"
    verify_link_per_ip: str = "30/minute;300/hour"
    verify_link_per_account: str = "10/minute;50/day"
    refresh_per_ip: str = "60/minute;1000/hour"
    refresh_per_token: str = "10/minute"  # noqa: S105 (a limit, not a secret)
    logout_per_ip: str = "30/minute;300/hour"
    logout_per_token: str = "10/minute"  # noqa: S105 (a limit, not a secret)
    password_change_per_ip: str = "10/minute;100/hour"  # noqa: S105 (a limit, not a secret)
    password_change_failures_per_account: str = "5/minute;20/day"  # noqa: S105 (a limit, not a secret)

    # Spelled out so that a search for a setting's name finds where it is read.
    SETTING_NAMES = {
        "register_per_ip": "RATELIMIT_REGISTER_PER_IP",
        "register_per_address": "RATELIMIT_REGISTER_PER_ADDRESS",
        "confirm_per_ip": "RATELIMIT_CONFIRM_PER_IP",
        "confirm_per_address": "RATELIMIT_CONFIRM_PER_ADDRESS",
        "resend_per_ip": "RATELIMIT_RESEND_PER_IP",
        "resend_per_address": "RATELIMIT_RESEND_PER_ADDRESS",
        "login_per_ip": "RATELIMIT_LOGIN_PER_IP",
        "login_failures_per_address": "RATELIMIT_LOGIN_FAILURES_PER_ADDRESS",
        "forgot_per_ip": "RATELIMIT_FORGOT_PER_IP",
        "forgot_per_address": "RATELIMIT_FORGOT_PER_ADDRESS",
        "reset_per_ip": "RATELIMIT_RESET_PER_IP",
        "reset_per_address": "RATELIMIT_RESET_PER_ADDRESS",
        "email_change_per_ip": "RATELIMIT_EMAIL_CHANGE_PER_IP",
        "email_change_per_address": "RATELIMIT_EMAIL_CHANGE_PER_ADDRESS",
        "email_confirm_per_ip": "RATELIMIT_EMAIL_CONFIRM_PER_IP",
        "email_confirm_per_account": "RATELIMIT_EMAIL_CONFIRM_PER_ACCOUNT",
        "verify_link_per_ip": "RATELIMIT_VERIFY_LINK_PER_IP",
        "verify_link_per_account": "RATELIMIT_VERIFY_LINK_PER_ACCOUNT",
        "refresh_per_ip": "RATELIMIT_REFRESH_PER_IP",
        "refresh_per_token": "RATELIMIT_REFRESH_PER_TOKEN",
        "logout_per_ip": "RATELIMIT_LOGOUT_PER_IP",
        "logout_per_token": "RATELIMIT_LOGOUT_PER_TOKEN",
        "password_change_per_ip": "RATELIMIT_PASSWORD_CHANGE_PER_IP",
        "password_change_failures_per_account": "RATELIMIT_PASSWORD_CHANGE_FAILURES_PER_ACCOUNT",
    }

    @classmethod
    def read(cls, read: Reader) -> RateLimits:
        values = {}
        defaults = cls()
        for name, env_name in cls.SETTING_NAMES.items():
            value = read.str(env_name, getattr(defaults, name))
            try:
                parse_many(value)
            except ValueError:
                raise SettingsError(f"{env_name} must be limits like '10/minute;100/hour', got {value!r}") from None
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class Settings(QueueSettings):
    app_env: str
    mongo_uri: str
    mongo_db: str
    redis_url: str
    rabbitmq_url: str
    account_creation_queue: str
    confirm_email_code_queue: str
    account_confirmed_queue: str
    jwt_secret: str
    jwt_ttl_seconds: int
    jwt_issuer: str
    jwt_audience: str
    refresh_ttl_seconds: int
    refresh_reuse_grace_seconds: int
    bcrypt_rounds: int
    resend_cooldown_seconds: int
    unverified_ttl_seconds: int
    ratelimit_enabled: bool
    ratelimit_storage_uri: str
    ratelimit_key_prefix: str
    rate_limits: RateLimits
    auth_host: str
    auth_port: int
    retry_delays_seconds: tuple[int, ...]
    confirm_wait_seconds: float
    publish_timeout_seconds: float
    max_body_bytes: int
    proxy_hops: int
    trusted_proxy: str | None
    server_threads: int
    confirm_max_waiting: int
    connection_limit: int
    channel_timeout_seconds: int
    cleanup_interval_seconds: int
    ratelimit_store_timeout_seconds: float
    log_level: str

    @property
    def development(self) -> bool:
        return self.app_env == "development"

    @property
    def ratelimit_store_options(self) -> dict[str, float]:
        """Redis client options for RATELIMIT_STORAGE_URI (limit counters, resend cooldowns).

        Redis answers in well under a millisecond: a call that takes longer than
        this is a hung store, and the request goes on without it.
        """
        timeout = self.ratelimit_store_timeout_seconds
        return {"socket_timeout": timeout, "socket_connect_timeout": timeout}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        read = Reader(environment(env))
        topology = read_topology(read)
        app_env = read.str("APP_ENV", "production")
        development = app_env == "development"
        redis_url = read.str("REDIS_URL", "redis://localhost:6379/0")
        bcrypt_rounds = read.int("BCRYPT_ROUNDS", 12, minimum=4, maximum=31)
        if bcrypt_rounds < 10 and not development and not read.bool("ALLOW_WEAK_BCRYPT", False):
            raise SettingsError("BCRYPT_ROUNDS below 10 is only allowed with APP_ENV=development")
        proxy_hops = read.int("PROXY_HOPS", 0, minimum=0, maximum=5)
        server_threads = read.int("AUTH_THREADS", 32, minimum=2, maximum=256)
        return cls(
            app_env=app_env,
            mongo_uri=read.str("MONGO_URI", "mongodb://localhost:27017"),
            mongo_db=read.str("MONGO_DB", "auth"),
            redis_url=redis_url,
            rabbitmq_url=read.str("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F"),
            account_creation_queue=topology.account_creation,
            confirm_email_code_queue=topology.confirm_email_code,
            account_confirmed_queue=topology.account_confirmed,
            jwt_secret=read.secret("JWT_SECRET", development, DEVELOPMENT_JWT_SECRET),
            jwt_ttl_seconds=read.int("JWT_TTL_SECONDS", 900, minimum=1),
            jwt_issuer=read.str("JWT_ISSUER", "auth-service"),
            jwt_audience=read.str("JWT_AUDIENCE", "mobile-app"),
            refresh_ttl_seconds=read.int("REFRESH_TTL_SECONDS", 30 * 24 * 3600, minimum=60),
            # Bounded: a long grace would let a stolen token be used alongside its owner unnoticed.
            refresh_reuse_grace_seconds=read.int("REFRESH_REUSE_GRACE_SECONDS", 10, minimum=0, maximum=300),
            bcrypt_rounds=bcrypt_rounds,
            resend_cooldown_seconds=read.int("RESEND_COOLDOWN_SECONDS", 60, minimum=0),
            unverified_ttl_seconds=read.int("UNVERIFIED_TTL_SECONDS", 7 * 86400, minimum=1),
            ratelimit_enabled=read.bool("RATELIMIT_ENABLED", True),
            ratelimit_storage_uri=read.str("RATELIMIT_STORAGE_URI", redis_url),
            ratelimit_key_prefix=read.str("RATELIMIT_KEY_PREFIX", "auth-ratelimit"),
            rate_limits=RateLimits.read(read),
            auth_host=read.str("AUTH_HOST", "127.0.0.1"),
            auth_port=read.int("AUTH_PORT", 8000, minimum=0, maximum=65535),
            retry_delays_seconds=topology.retry_delays,
            confirm_wait_seconds=read.float("CONFIRM_WAIT_SECONDS", 5.0, minimum=0.1),
            publish_timeout_seconds=read.float("PUBLISH_TIMEOUT_SECONDS", 3.0, minimum=0.1),
            max_body_bytes=read.int("MAX_BODY_BYTES", 16 * 1024, minimum=1024),
            proxy_hops=proxy_hops,
            trusted_proxy=_trusted_proxy(read.str("TRUSTED_PROXY"), proxy_hops),
            server_threads=server_threads,
            # Fewer than the request threads, so that waiting confirms always leave some to everything else.
            confirm_max_waiting=read.int(
                "CONFIRM_MAX_WAITING", server_threads // 2, minimum=1, maximum=server_threads - 1
            ),
            connection_limit=read.int("AUTH_CONNECTION_LIMIT", 1000, minimum=10, maximum=100_000),
            channel_timeout_seconds=read.int("AUTH_CHANNEL_TIMEOUT_SECONDS", 30, minimum=1),
            cleanup_interval_seconds=read.int("AUTH_CLEANUP_INTERVAL_SECONDS", 10, minimum=1),
            ratelimit_store_timeout_seconds=read.float("RATELIMIT_STORE_TIMEOUT_SECONDS", 0.25, minimum=0.01),
            log_level=read.str("LOG_LEVEL", "INFO").upper(),
        )


def _trusted_proxy(value: str | None, proxy_hops: int) -> str | None:
    """The one peer whose X-Forwarded-* headers are believed: loopback unless named, nobody without PROXY_HOPS."""
    if proxy_hops == 0:
        if value is not None:
            raise SettingsError("TRUSTED_PROXY needs PROXY_HOPS, the number of proxies in front of the API")
        return None
    if value is None:
        return LOOPBACK
    if value == ANY_PEER:
        return ANY_PEER
    try:
        # The form the server reports the peer in, so that "::0001" still matches "::1".
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise SettingsError(f"TRUSTED_PROXY must be one IP address or *, got {value!r}") from None
