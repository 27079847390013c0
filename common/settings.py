"""Reading settings from the environment, after a ``.env`` file fills in the gaps."""

from __future__ import annotations

import os
from collections.abc import Mapping

from dotenv import dotenv_values

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting is missing or malformed; the service refuses to start."""


def environment(env: Mapping[str, str] | None = None, dotenv_path: str = ".env") -> dict[str, str]:
    """The process environment, with values from ``.env`` where the environment is silent."""
    if env is not None:
        return dict(env)
    from_file = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
    return {**from_file, **os.environ}


class Reader:
    def __init__(self, env: Mapping[str, str]):
        self._env = env

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self._env.get(name)
        return default if value is None or value == "" else value

    def int(self, name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self.str(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{name} must be at most {maximum}")
        return value

    def float(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self.str(name)
        try:
            value = default if raw is None else float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}")
        return value

    def int_tuple(self, name: str, default: tuple[int, ...], minimum: int = 1) -> tuple[int, ...]:
        """A comma-separated list of integers, such as ``2,10,30,120``."""
        raw = self.str(name)
        if raw is None:
            return default
        try:
            values = tuple(int(part) for part in raw.split(","))
        except ValueError:
            raise SettingsError(f"{name} must be comma-separated integers, got {raw!r}") from None
        if any(value < minimum for value in values):
            raise SettingsError(f"{name} values must be at least {minimum}")
        return values

    def bool(self, name: str, default: bool) -> bool:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":  # an empty value means unset, as for every other setting
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    def optional_secret(self, name: str, development: bool, minimum_bytes: int = 32) -> str | None:
        """A key that may be left unset (the caller has another source), but never too short."""
        value = self.str(name)
        if value is not None and len(value.encode()) < minimum_bytes and not development:
            raise SettingsError(f"{name} must be at least {minimum_bytes} bytes")
        return value

    def secret(self, name: str, development: bool, development_default: str, minimum_bytes: int = 32) -> str:
        """A key that must be long enough; only development may fall back to a fixed one."""
        value = self.str(name)
        if value is None:
            if development:
                return development_default
            raise SettingsError(f"{name} is required (at least {minimum_bytes} bytes) unless APP_ENV=development")
        if len(value.encode()) < minimum_bytes and not development:
            raise SettingsError(f"{name} must be at least {minimum_bytes} bytes")
        return value
