"""Settings as typed, bounded models: one field per environment variable.

A field's environment variable is its name in capitals (``auth_port`` is ``AUTH_PORT``): the
models are the one list of every setting the services read. ``ServiceSettings`` holds what both
services read; each service's ``config.py`` adds its own. The process environment wins over a
``.env`` file, which fills in what the environment does not set; an empty value means unset.

A model declares each setting as an annotated class attribute, the way dataclasses do::

    auth_port: Port = 8000                       # Port = Annotated[int, setting(ge=0, le=65535)]
    jwt_ttl_seconds: int = setting(900, ge=1)
    trusted_proxy: Annotated[str | None, Check(_peer_address)] = setting(default_from=...)

and ``@cross_check`` methods state the rules between settings. The loader below reads the kinds of
value these models use (text, whole and finite numbers, the flag words, Literal choices, paths,
secrets, and tuples, lists and sets made by a ``Parse`` step from their own notation), checks the
bounds, and refuses every bad setting in one line. It replaced pydantic-settings, which cost each
process about 9 MiB of memory for this one job (docs/decisions/own-settings-loader.md).
"""

from __future__ import annotations

import inspect
import math
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin, get_type_hints

from dotenv import dotenv_values

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
FLAG_REFUSAL = "must be true or false (or 1/0, yes/no, on/off)"
DOTENV_FILE = ".env"


class SettingsError(ValueError):
    """A setting is missing or malformed; the service refuses to start."""


class SecretStr:
    """A secret setting's value: its repr and str never show it; ``get_secret_value()`` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._value else "SecretStr('')"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_MISSING: Any = object()


@dataclass(frozen=True)
class Spec:
    """A setting's default and bounds: what ``setting()`` returns."""

    default: Any = _MISSING
    # Computed from the settings declared before it (a dict by field name), when none is given.
    default_from: Callable[[dict[str, Any]], Any] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    # False keeps the value out of repr and of error messages (URLs may carry a password).
    shown: bool = True

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.default_from is None


def setting(default: Any = _MISSING, *, repr: bool = True, **bounds: Any) -> Any:
    """A field's default and bounds (``Spec``'s fields: default_from, ge, gt, le, min_length, max_length,
    pattern), as a class attribute or inside ``Annotated[...]``; ``repr=False`` hides the value."""
    return Spec(default, shown=repr, **bounds)


@dataclass(frozen=True)
class Parse:
    """Turns the variable's text into the value of the field's type before it is checked (lists, words)."""

    parse: Callable[[Any], Any]


@dataclass(frozen=True)
class Check:
    """Checks, and may normalise, the typed value; a ValueError's message is the refusal."""

    check: Callable[[Any], Any]


def cross_check(method: Callable[[Any], None]) -> Callable[[Any], None]:
    """Marks a method as a rule between settings, run once every field is valid; it raises ValueError."""
    method.__cross_check__ = True  # type: ignore[attr-defined]
    return method


@dataclass(frozen=True)
class Field:
    name: str
    annotation: Any
    spec: Spec

    @property
    def default(self) -> Any:
        return None if self.spec.default is _MISSING else self.spec.default

    @property
    def secret(self) -> bool:
        return _mentions(self.annotation, SecretStr)


def _mentions(annotation: Any, kind: type) -> bool:
    return annotation is kind or any(_mentions(argument, kind) for argument in get_args(annotation))


def _bounded(value: Any, spec: Spec) -> None:
    if spec.ge is not None and value < spec.ge:
        raise ValueError(f"must be at least {_number(spec.ge)}")
    if spec.gt is not None and value <= spec.gt:
        raise ValueError(f"must be more than {_number(spec.gt)}")
    if spec.le is not None and value > spec.le:
        raise ValueError(f"must be at most {_number(spec.le)}")
    if spec.min_length is not None and len(value) < spec.min_length:
        raise ValueError(f"must be at least {spec.min_length} characters")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise ValueError(f"must be at most {spec.max_length} characters")
    if spec.pattern is not None and not re.search(spec.pattern, value):
        raise ValueError(f"must match {spec.pattern}")


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _typed(annotation: Any, value: Any) -> Any:
    """``value`` (the variable's text, a default, or a Parse step's result) as ``annotation`` says."""
    origin = get_origin(annotation)
    if origin is Annotated:
        kind, *metadata = get_args(annotation)
        for item in metadata:
            if isinstance(item, Parse):
                value = item.parse(value)
        value = _typed(kind, value)
        for item in metadata:
            if isinstance(item, Spec) and value is not None:
                _bounded(value, item)
        for item in metadata:
            if isinstance(item, Check):
                value = item.check(value)
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in get_args(annotation):
                return None
            raise ValueError("is required")
        [kind] = [argument for argument in get_args(annotation) if argument is not type(None)]
        return _typed(kind, value)
    if origin is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(choice or repr(choice) for choice in choices))
        return value
    if origin in (tuple, list, frozenset):
        if isinstance(value, str) or not isinstance(value, tuple | list | frozenset | set):
            raise ValueError("must be a comma-separated list")
        kind = get_args(annotation)[0]
        return origin(_typed(kind, item) for item in value)
    if value is None:
        raise ValueError("is required")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(FLAG_REFUSAL)
        return value
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        try:
            return int(value.strip()) if isinstance(value, str) else int(value)
        except ValueError:
            raise ValueError("must be a whole number") from None
    if annotation is float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError("must be text")
        return value
    if annotation is SecretStr:
        return value if isinstance(value, SecretStr) else SecretStr(str(value))
    if annotation is Path:
        return Path(value)
    raise TypeError(f"a setting of type {annotation!r} has no reader")


class SettingsModel:
    """Typed settings read from the environment; frozen once read. Subclasses declare the fields."""

    fields: ClassVar[dict[str, Field]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = get_type_hints(cls, include_extras=True)
        # Declaration order, the base's fields first: a computed default sees the fields before it.
        fields = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(vars(base).get("fields", {}))
        for name in inspect.get_annotations(cls):
            annotation = hints[name]
            if get_origin(annotation) is ClassVar or name.startswith("_"):
                continue
            declared = cls.__dict__.get(name, _MISSING)
            spec = declared if isinstance(declared, Spec) else Spec(default=declared)
            fields[name] = Field(name, annotation, spec)
        cls.fields = fields
        for name in fields:
            if name in cls.__dict__:
                delattr(cls, name)

    @classmethod
    def setting_names(cls) -> set[str]:
        """The environment variables this model reads."""
        return {name.upper() for name in cls.fields}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings of ``env`` alone if given (tests), else of the process environment and ``.env``.

        Raises SettingsError with one line naming each refused setting.
        """
        if env is None:
            from_file = {name: value for name, value in dotenv_values(DOTENV_FILE).items() if value}
            env = {**from_file, **{name: value for name, value in os.environ.items() if value}}
        given = {name.lower(): value for name, value in env.items() if value != ""}
        values: dict[str, Any] = {}
        refused: list[str] = []
        for field in cls.fields.values():
            spec = field.spec
            if field.name in given:
                raw = given[field.name]
            elif spec.default_from is not None:
                if refused:  # computed from settings of which one is refused: say nothing of it
                    continue
                raw = spec.default_from(dict(values))
            elif spec.required:
                refused.append(f"{field.name.upper()}: is required")
                continue
            else:
                raw = spec.default
            try:
                values[field.name] = _typed(Annotated[field.annotation, spec], raw)
            except ValueError as error:
                echoed = field.name in given and spec.shown and not field.secret
                got = f" (got {raw!r})" if echoed else ""
                refused.append(f"{field.name.upper()}: {error}{got}")
        if refused:
            raise SettingsError("; ".join(refused))
        settings = cls._of(values)
        for rule in _rules(cls):
            try:
                rule(settings)
            except ValueError as error:
                raise SettingsError(str(error)) from None
        return settings

    @classmethod
    def _of(cls, values: Mapping[str, Any]) -> Self:
        settings = object.__new__(cls)
        for name, value in values.items():
            object.__setattr__(settings, name, value)
        return settings

    def replaced(self, **changes: Any) -> Self:
        """A copy with these fields changed (values already of their type; not checked again)."""
        unknown = changes.keys() - self.fields.keys()
        if unknown:
            raise TypeError(f"not settings of {type(self).__name__}: {sorted(unknown)}")
        return self._of({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.fields}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("settings are read once, at start, and not changed")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SettingsModel) and type(other) is type(self) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name, field in self.fields.items() if field.spec.shown)
        return f"{type(self).__name__}({shown})"


def _rules(cls: type) -> list[Callable[[Any], None]]:
    found: dict[str, Callable[[Any], None]] = {}
    for owner in reversed(cls.__mro__):
        for name, member in vars(owner).items():
            if getattr(member, "__cross_check__", False):
                found[name] = member
    return list(found.values())


def _flag(value: object) -> object:
    # The words operators are told they may use, and no others ("t", "y", "2" are refused).
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(FLAG_REFUSAL)
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


Flag = Annotated[bool, Parse(_flag)]
# "2,10,30": a list in its own notation.
Delays = Annotated[tuple[Annotated[int, setting(ge=1)], ...], Parse(_comma_separated)]
# AMQP caps a queue name at 255 bytes.
QueueName = Annotated[str, setting(min_length=1, max_length=255)]
Port = Annotated[int, setting(ge=0, le=65535)]
ShippedLocale = Annotated[str, Parse(_shipped_locale)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], Parse(_upper)]


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"{path} is not a file that can be read")
    return path


# A file that must exist when the service starts.
FilePath = Annotated[Path, Check(_existing_file)]


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


class ServiceSettings(SettingsModel):
    """What both services read, with the same names, defaults and bounds."""

    app_env: str = "production"
    log_level: LogLevel = "INFO"
    # URLs may carry a password: kept out of repr and of error messages (repr=False).
    redis_url: str = setting("redis://localhost:6379/0", repr=False)
    rabbitmq_url: str = setting("amqp://guest:guest@localhost:5672/%2F", repr=False)
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
    code_ttl_seconds: int = setting(600, ge=1)
    # The OTLP/HTTP collector traces are exported to (common/tracing.py); unset, none leave the process.
    otel_exporter_otlp_endpoint: str | None = setting(None, pattern=r"^https?://")
    # Quorum queues on a cluster (common/messaging/topology.py): 0 is the broker's default group
    # (every node at declaration); the locator defaults to "balanced" when RABBITMQ_URL lists nodes.
    quorum_initial_group_size: int = setting(0, ge=0, le=99)
    quorum_leader_locator: Literal["", "balanced", "client-local"] = ""
    # Redis through Sentinel: "host:port,host:port" and the monitored master's name.
    redis_sentinels: Annotated[tuple[str, ...], Parse(_comma_separated)] = ()
    redis_sentinel_master: str | None = None

    @cross_check
    def _sentinels_come_with_a_master(self) -> None:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER, the name the Sentinels monitor")
        for address in self.redis_sentinels:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"REDIS_SENTINELS: {address!r} is not host:port")

    @property
    def redis_uri(self) -> str:
        """Where Redis is: through Sentinel when REDIS_SENTINELS is set, else REDIS_URL."""
        return default_redis_uri(self.as_dict())

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
