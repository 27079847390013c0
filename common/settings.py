"""Settings as typed, bounded pydantic-settings models: one field per environment variable.

A field's environment variable is its name in capitals (``auth_port`` is ``AUTH_PORT``): the
models are the one list of every setting the services read. ``ServiceSettings`` holds what both
services read; each service's ``config.py`` adds its own. The process environment wins over a
``.env`` file, which fills in what the environment does not set; an empty value means unset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from common.locales import SHIPPED_LOCALES
from common.messaging.connection import node_urls
from common.messaging.topology import (
    DEFAULT_EVENTS_EXCHANGE,
    RETRY_DELAYS_SECONDS,
    WEBHOOK_RETRY_SCHEDULE,
    Replication,
    Topology,
)
from common.redis_client import sentinel_uri

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
MINIMUM_KEY_BYTES = 32


class SettingsError(ValueError):
    """A setting is missing or malformed; the service refuses to start."""


def _flag(value: object) -> object:
    # Stricter than pydantic's own booleans ("t", "y"...): the words operators are told they may use.
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError("must be true or false (or 1/0, yes/no, on/off)")
    return value


def _comma_separated(value: object) -> object:
    return tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _shipped_locale(value: object) -> object:
    # Written as operators may type it ("pt-br"), kept as the catalogs name it.
    if isinstance(value, str):
        for locale in SHIPPED_LOCALES:
            if value.strip().lower() == locale.lower():
                return locale
        raise ValueError(f"must be one of the shipped languages: {', '.join(SHIPPED_LOCALES)}")
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]
# NoDecode: "2,10,30" is a list of its own notation, not the JSON pydantic-settings expects of a tuple.
Delays = Annotated[tuple[Annotated[int, Field(ge=1)], ...], NoDecode, BeforeValidator(_comma_separated)]
# AMQP caps a queue name at 255 bytes.
QueueName = Annotated[str, Field(min_length=1, max_length=255)]
Port = Annotated[int, Field(ge=0, le=65535)]
ShippedLocale = Annotated[str, BeforeValidator(_shipped_locale)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]


def default_redis_uri(data: Mapping[str, Any]) -> str:
    """REDIS_URL, or the Sentinel URI of REDIS_SENTINELS and REDIS_SENTINEL_MASTER when they are set."""
    if data.get("redis_sentinels"):
        return sentinel_uri(data["redis_sentinels"], data["redis_sentinel_master"])
    return data["redis_url"]


def key_error(name: str, key: SecretStr | None, development: bool, required: bool) -> str | None:
    """Why a signing or hashing key is refused, or None. Development may use any key, or none."""
    if development:
        return None
    if key is None or not key.get_secret_value():
        return (
            f"{name} is required (at least {MINIMUM_KEY_BYTES} bytes) unless APP_ENV=development" if required else None
        )
    if len(key.get_secret_value().encode()) < MINIMUM_KEY_BYTES:
        return f"{name} must be at least {MINIMUM_KEY_BYTES} bytes"
    return None


class _GivenEnvironment(EnvSettingsSource):
    """The environment source reading a mapping handed to it instead of the process environment."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class ServiceSettings(BaseSettings):
    """What both services read, with the same names, defaults and bounds."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        allow_inf_nan=False,
        validate_default=True,
    )

    app_env: str = "production"
    log_level: LogLevel = "INFO"
    # URLs may carry a password: kept out of repr and of error messages (repr=False).
    redis_url: str = Field("redis://localhost:6379/0", repr=False)
    rabbitmq_url: str = Field("amqp://guest:guest@localhost:5672/%2F", repr=False)
    account_creation_queue: QueueName = "ACCOUNT_CREATION_QUEUE"
    confirm_email_code_queue: QueueName = "CONFIRM_EMAIL_CODE_QUEUE"
    account_confirmed_queue: QueueName = "ACCOUNT_CONFIRMED_QUEUE"
    # The worker's own queue of the account events it mails a notice about.
    account_notifications_queue: QueueName = "ACCOUNT_NOTIFICATIONS_QUEUE"
    account_events_exchange: QueueName = DEFAULT_EVENTS_EXCHANGE
    # Auth's webhook dispatcher queue, bound to every account event (its permissions come from the topology).
    webhooks_queue: QueueName = "WEBHOOKS_QUEUE"
    # Seconds before each retry of a failed webhook delivery; after the last, it is marked failed.
    webhook_retry_schedule: Delays = WEBHOOK_RETRY_SCHEDULE
    retry_delays_seconds: Delays = RETRY_DELAYS_SECONDS
    # The language of emails for an account that chose none (auth stores it, the worker falls back to it).
    default_locale: ShippedLocale = "en"
    # The worker keeps a code this long; auth keeps a sign-in challenge as long as its code.
    code_ttl_seconds: int = Field(600, ge=1)
    # The OTLP/HTTP collector traces are exported to (common/tracing.py); unset, none leave the process.
    otel_exporter_otlp_endpoint: str | None = Field(None, pattern=r"^https?://")
    # Quorum queues on a cluster (common/messaging/topology.py): 0 is the broker's default group
    # (every node at declaration); the locator defaults to "balanced" when RABBITMQ_URL lists nodes.
    quorum_initial_group_size: int = Field(0, ge=0, le=99)
    quorum_leader_locator: Literal["", "balanced", "client-local"] = ""
    # Redis through Sentinel: "host:port,host:port" and the monitored master's name.
    redis_sentinels: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_separated)] = ()
    redis_sentinel_master: str | None = None

    @model_validator(mode="after")
    def _sentinels_come_with_a_master(self) -> Self:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER, the name the Sentinels monitor")
        for address in self.redis_sentinels:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"REDIS_SENTINELS: {address!r} is not host:port")
        return self

    @property
    def redis_uri(self) -> str:
        """Where Redis is: through Sentinel when REDIS_SENTINELS is set, else REDIS_URL."""
        return default_redis_uri(self.model_dump())

    @property
    def replication(self) -> Replication:
        locator = self.quorum_leader_locator
        if not locator and len(node_urls(self.rabbitmq_url)) > 1:
            locator = "balanced"
        return Replication(self.quorum_initial_group_size, locator)

    @property
    def development(self) -> bool:
        return self.app_env == "development"

    @property
    def topology(self) -> Topology:
        """The queues of this copy of the system, where each travels, and the retry ladder."""
        return Topology(
            self.account_creation_queue,
            self.confirm_email_code_queue,
            self.account_confirmed_queue,
            self.retry_delays_seconds,
            self.replication,
            self.account_notifications_queue,
            self.account_events_exchange,
            self.webhooks_queue,
            self.webhook_retry_schedule,
        )

    @property
    def work_queues(self) -> list[str]:
        return self.topology.work_queues

    @classmethod
    def setting_names(cls) -> set[str]:
        """The environment variables this model reads."""
        return {name.upper() for name in cls.model_fields}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings of ``env`` alone if given (tests), else of the process environment and ``.env``.

        Raises SettingsError with one line naming each refused setting.
        """
        try:
            if env is None:
                return cls()
            return cls(_build_sources=((_GivenEnvironment(cls, env),), {}))
        except ValidationError as error:
            # A default computed from another setting is not computed once that one is refused: say nothing of it.
            refused = [item for item in error.errors() if item["type"] != "default_factory_not_called"]
            raise SettingsError("; ".join(_describe(cls.model_fields, item) for item in refused)) from None


def _describe(fields: Mapping[str, FieldInfo], item: Any) -> str:
    """One refusal as ``NAME: what is wrong (got 'value')``, never echoing a secret or a URL."""
    message = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
    if not item["loc"]:  # a rule across settings: its message names them
        return message
    name = str(item["loc"][0])
    field = fields.get(name)
    shown = field is not None and field.repr and SecretStr not in (field.annotation, *get_args(field.annotation))
    got = f" (got {item['input']!r})" if shown and isinstance(item["input"], str) else ""
    return f"{name.upper()}: {message}{got}"
