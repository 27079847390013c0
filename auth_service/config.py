"""The auth service's settings, read once from the environment (see ../shared/CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from limits import parse_many

from common.messaging.topology import RETRY_DELAYS_SECONDS
from common.settings import Reader, SettingsError, environment

DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-do-not-use-in-production"  # noqa: S105 (refused outside APP_ENV=development)


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
class Settings:
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
    server_threads: int
    log_level: str

    @property
    def development(self) -> bool:
        return self.app_env == "development"

    @property
    def work_queues(self) -> list[str]:
        return [self.account_creation_queue, self.confirm_email_code_queue, self.account_confirmed_queue]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        read = Reader(environment(env))
        app_env = read.str("APP_ENV", "production")
        development = app_env == "development"
        redis_url = read.str("REDIS_URL", "redis://localhost:6379/0")
        bcrypt_rounds = read.int("BCRYPT_ROUNDS", 12, minimum=4, maximum=31)
        if bcrypt_rounds < 10 and not development and not read.bool("ALLOW_WEAK_BCRYPT", False):
            raise SettingsError("BCRYPT_ROUNDS below 10 is only allowed with APP_ENV=development")
        return cls(
            app_env=app_env,
            mongo_uri=read.str("MONGO_URI", "mongodb://localhost:27017"),
            mongo_db=read.str("MONGO_DB", "auth"),
            redis_url=redis_url,
            rabbitmq_url=read.str("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F"),
            account_creation_queue=read.str("ACCOUNT_CREATION_QUEUE", "ACCOUNT_CREATION_QUEUE"),
            confirm_email_code_queue=read.str("CONFIRM_EMAIL_CODE_QUEUE", "CONFIRM_EMAIL_CODE_QUEUE"),
            account_confirmed_queue=read.str("ACCOUNT_CONFIRMED_QUEUE", "ACCOUNT_CONFIRMED_QUEUE"),
            jwt_secret=read.secret("JWT_SECRET", development, DEVELOPMENT_JWT_SECRET),
            jwt_ttl_seconds=read.int("JWT_TTL_SECONDS", 900, minimum=1),
            jwt_issuer=read.str("JWT_ISSUER", "auth-service"),
            jwt_audience=read.str("JWT_AUDIENCE", "mobile-app"),
            refresh_ttl_seconds=read.int("REFRESH_TTL_SECONDS", 30 * 24 * 3600, minimum=60),
            # Bounded: a long grace would let a stolen token be used alongside its owner unnoticed.
            refresh_reuse_grace_seconds=read.int("REFRESH_REUSE_GRACE_SECONDS", 10, minimum=0, maximum=300),
            bcrypt_rounds=bcrypt_rounds,
            resend_cooldown_seconds=read.int("RESEND_COOLDOWN_SECONDS", 60, minimum=0),
            ratelimit_enabled=read.bool("RATELIMIT_ENABLED", True),
            ratelimit_storage_uri=read.str("RATELIMIT_STORAGE_URI", redis_url),
            ratelimit_key_prefix=read.str("RATELIMIT_KEY_PREFIX", "auth-ratelimit"),
            rate_limits=RateLimits.read(read),
            auth_host=read.str("AUTH_HOST", "127.0.0.1"),
            auth_port=read.int("AUTH_PORT", 8000, minimum=0, maximum=65535),
            retry_delays_seconds=read.int_tuple("RETRY_DELAYS_SECONDS", RETRY_DELAYS_SECONDS),
            confirm_wait_seconds=read.float("CONFIRM_WAIT_SECONDS", 5.0, minimum=0.1),
            publish_timeout_seconds=read.float("PUBLISH_TIMEOUT_SECONDS", 3.0, minimum=0.1),
            max_body_bytes=read.int("MAX_BODY_BYTES", 16 * 1024, minimum=1024),
            proxy_hops=read.int("PROXY_HOPS", 0, minimum=0, maximum=5),
            server_threads=read.int("AUTH_THREADS", 8, minimum=1, maximum=64),
            log_level=read.str("LOG_LEVEL", "INFO").upper(),
        )
