import os
import subprocess
import sys
from pathlib import Path

import pytest

from auth_service.config import Settings as AuthSettings
from common.settings import ServiceSettings, SettingsError
from email_service.config import Settings as WorkerSettings

LONG = "x" * 32
ROOT = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_contract():
    settings = AuthSettings.from_env({"JWT_SECRET": LONG})
    assert settings.mongo_uri == "mongodb://localhost:27017"
    assert settings.mongo_db == "auth"
    assert settings.account_creation_queue == "ACCOUNT_CREATION_QUEUE"
    assert settings.jwt_ttl_seconds == 900
    assert settings.bcrypt_rounds == 12
    assert settings.resend_cooldown_seconds == 60
    assert settings.ratelimit_enabled is True
    assert settings.ratelimit_storage_uri == settings.redis_url == "redis://localhost:6379/0"
    assert (settings.auth_host, settings.auth_port) == ("127.0.0.1", 8000)
    worker = WorkerSettings.from_env({"CODE_HMAC_KEY": LONG})
    assert (worker.smtp_host, worker.smtp_port) == ("localhost", 1025)
    assert (worker.code_ttl_seconds, worker.code_max_attempts, worker.max_codes_per_hour) == (600, 5, 5)
    assert worker.mail_default_sender == "no-reply@localhost"


@pytest.mark.parametrize("env", [{}, {"JWT_SECRET": "too-short"}])
def test_auth_refuses_to_start_without_a_strong_jwt_secret(env):
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        AuthSettings.from_env(env)


def test_development_may_run_without_secrets_but_never_without_validation():
    settings = AuthSettings.from_env({"APP_ENV": "development"})
    assert len(settings.jwt_secret.get_secret_value().encode()) >= 32
    with pytest.raises(SettingsError):
        AuthSettings.from_env({"APP_ENV": "development", "AUTH_PORT": "eighty"})


def test_the_worker_starts_on_the_contract_settings_alone_but_refuses_a_short_code_key():
    assert WorkerSettings.from_env({}).code_hmac_key is None
    with pytest.raises(SettingsError, match="CODE_HMAC_KEY"):
        WorkerSettings.from_env({"CODE_HMAC_KEY": "short"})


def test_weak_bcrypt_cost_needs_development():
    with pytest.raises(SettingsError, match="BCRYPT_ROUNDS"):
        AuthSettings.from_env({"JWT_SECRET": LONG, "BCRYPT_ROUNDS": "4"})


def test_an_empty_value_means_the_default_for_every_kind_of_setting():
    settings = AuthSettings.from_env({"JWT_SECRET": LONG, "RATELIMIT_ENABLED": "", "AUTH_PORT": ""})
    assert settings.ratelimit_enabled is True
    assert settings.auth_port == 8000


def test_cooldowns_live_under_the_rate_limit_key_prefix():
    import fakeredis

    from auth_service.adapters.cooldowns import RedisCooldowns

    client = fakeredis.FakeRedis()
    cooldowns = RedisCooldowns(client, "copy-a")
    assert cooldowns.start("resend:a@example.com", 60) == 0.0
    assert 59 < cooldowns.start("resend:a@example.com", 60) <= 60
    assert RedisCooldowns(client, "copy-b").start("resend:a@example.com", 60) == 0.0
    assert all(key.startswith(b"copy-") for key in client.scan_iter())


# --- where values come from


@pytest.fixture
def process_environment(monkeypatch, tmp_path):
    """A process environment holding none of the settings, in a folder whose .env the test writes."""
    for name in AuthSettings.setting_names() | WorkerSettings.setting_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".env"


def test_dotenv_fills_in_what_the_environment_does_not_set_and_the_environment_wins(process_environment, monkeypatch):
    process_environment.write_text(
        f"JWT_SECRET={LONG}\nAUTH_PORT=9001\nAUTH_HOST=10.1.2.3\nRABBITMQ_USER=compose-only\n"
    )
    monkeypatch.setenv("AUTH_HOST", "0.0.0.0")
    monkeypatch.setenv("AUTH_THREADS", "")  # empty: unset, the default
    settings = AuthSettings.from_env()
    assert (settings.auth_host, settings.auth_port, settings.auth_threads) == ("0.0.0.0", 9001, 32)
    assert settings.jwt_secret.get_secret_value() == LONG


def test_without_a_dotenv_the_environment_alone_is_read(process_environment, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", LONG)
    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "3,7")
    assert AuthSettings.from_env().retry_delays_seconds == (3, 7)


def test_an_explicit_environment_ignores_the_process_one_and_dotenv(process_environment, monkeypatch):
    process_environment.write_text("AUTH_PORT=9001\n")
    monkeypatch.setenv("AUTH_HOST", "0.0.0.0")
    settings = AuthSettings.from_env({"JWT_SECRET": LONG})
    assert (settings.auth_host, settings.auth_port) == ("127.0.0.1", 8000)


# --- kinds of value


@pytest.mark.parametrize(
    ("word", "value"),
    [(w, True) for w in ("true", "1", "yes", "on", " TRUE ", "On")]
    + [(w, False) for w in ("false", "0", "no", "off", "False", " OFF")],
)
def test_booleans_take_the_usual_words(word, value):
    assert WorkerSettings.from_env({"SMTP_USE_TLS": word}).smtp_use_tls is value
    assert AuthSettings.from_env({"JWT_SECRET": LONG, "RATELIMIT_ENABLED": word}).ratelimit_enabled is value


@pytest.mark.parametrize("word", ["maybe", "2", "enabled", "t"])
def test_other_boolean_words_are_refused_naming_the_setting(word):
    with pytest.raises(SettingsError, match=r"^SMTP_USE_SSL: must be true or false"):
        WorkerSettings.from_env({"SMTP_USE_SSL": word})


def test_an_empty_value_means_unset_for_every_kind():
    empty = dict.fromkeys(AuthSettings.setting_names() | WorkerSettings.setting_names(), "")
    assert AuthSettings.from_env({**empty, "APP_ENV": "development"}) == AuthSettings.from_env(
        {"APP_ENV": "development"}
    )
    assert WorkerSettings.from_env(empty) == WorkerSettings.from_env({})


def test_retry_delays_are_comma_separated_positive_integers():
    assert WorkerSettings.from_env({"RETRY_DELAYS_SECONDS": "2,10,30"}).retry_delays_seconds == (2, 10, 30)
    assert WorkerSettings.from_env({"RETRY_DELAYS_SECONDS": " 5 , 9"}).retry_delays_seconds == (5, 9)
    assert WorkerSettings.from_env({"RETRY_DELAYS_SECONDS": "4"}).retry_delays_seconds == (4,)
    with pytest.raises(SettingsError, match="RETRY_DELAYS_SECONDS"):
        WorkerSettings.from_env({"RETRY_DELAYS_SECONDS": "[2, 10]"})


@pytest.mark.parametrize(
    ("service", "name", "value"),
    [
        (AuthSettings, "AUTH_PORT", "65536"),
        (AuthSettings, "AUTH_PORT", "-1"),
        (AuthSettings, "AUTH_THREADS", "1"),
        (AuthSettings, "AUTH_THREADS", "257"),
        (AuthSettings, "BCRYPT_ROUNDS", "32"),
        (AuthSettings, "BCRYPT_ROUNDS", "3"),
        (AuthSettings, "PROXY_HOPS", "6"),
        (AuthSettings, "MAX_BODY_BYTES", "1023"),
        (AuthSettings, "JWT_TTL_SECONDS", "0"),
        (AuthSettings, "RESEND_COOLDOWN_SECONDS", "-1"),
        (AuthSettings, "CONFIRM_WAIT_SECONDS", "0.05"),
        (AuthSettings, "PUBLISH_TIMEOUT_SECONDS", "nan"),
        (AuthSettings, "CONFIRM_WAIT_SECONDS", "inf"),
        (AuthSettings, "LOG_LEVEL", "chatty"),
        (AuthSettings, "ACCOUNT_CREATION_QUEUE", "q" * 256),
        (AuthSettings, "UNVERIFIED_TTL_SECONDS", "0"),
        (AuthSettings, "REFRESH_REUSE_GRACE_SECONDS", "301"),
        (AuthSettings, "AUTH_CONNECTION_LIMIT", "9"),
        (AuthSettings, "RATELIMIT_STORE_TIMEOUT_SECONDS", "0"),
        (WorkerSettings, "PUBLIC_BASE_URL", "ftp://example.org"),
        (WorkerSettings, "SMTP_PORT", "0"),
        (WorkerSettings, "SMTP_TIMEOUT_SECONDS", "0"),
        (WorkerSettings, "CODE_TTL_SECONDS", "0"),
        (WorkerSettings, "CODE_MAX_ATTEMPTS", "0"),
        (WorkerSettings, "MAX_CODES_PER_HOUR", "0"),
        (WorkerSettings, "MAX_CODES_PER_DAY", "ten"),
        (WorkerSettings, "WORKER_PREFETCH", "0"),
        (WorkerSettings, "WORKER_THREADS", "65"),
        (WorkerSettings, "WORKER_METRICS_PORT", "70000"),
    ],
)
def test_a_value_out_of_bounds_is_refused_in_one_line_naming_the_setting(service, name, value):
    with pytest.raises(SettingsError) as refused:
        service.from_env({"APP_ENV": "development", name: value})
    message = str(refused.value)
    assert message.startswith(f"{name}: ") and "\n" not in message


def test_every_refused_setting_is_named_once_in_one_line():
    with pytest.raises(SettingsError) as refused:
        AuthSettings.from_env({"APP_ENV": "development", "AUTH_PORT": "x", "REDIS_URL": "", "LOG_LEVEL": "loud"})
    message = str(refused.value)
    assert "\n" not in message
    assert [part.split(":")[0] for part in message.split("; ")] == ["LOG_LEVEL", "AUTH_PORT"]


def test_log_level_is_read_in_any_case():
    assert AuthSettings.from_env({"APP_ENV": "development", "LOG_LEVEL": "debug"}).log_level == "DEBUG"


# --- rules across settings


def test_weak_bcrypt_outside_development_needs_allow_weak_bcrypt():
    assert (
        AuthSettings.from_env({"JWT_SECRET": LONG, "BCRYPT_ROUNDS": "4", "ALLOW_WEAK_BCRYPT": "true"}).bcrypt_rounds
        == 4
    )
    assert AuthSettings.from_env({"APP_ENV": "development", "BCRYPT_ROUNDS": "4"}).bcrypt_rounds == 4
    with pytest.raises(SettingsError, match="BCRYPT_ROUNDS"):
        AuthSettings.from_env({"JWT_SECRET": LONG, "BCRYPT_ROUNDS": "9", "ALLOW_WEAK_BCRYPT": "false"})
    assert AuthSettings.from_env({"JWT_SECRET": LONG, "BCRYPT_ROUNDS": "10"}).bcrypt_rounds == 10


def test_keys_are_counted_in_bytes():
    assert WorkerSettings.from_env({"CODE_HMAC_KEY": "é" * 16}).code_hmac_key is not None  # 32 bytes
    with pytest.raises(SettingsError, match=r"^CODE_HMAC_KEY must be at least 32 bytes$"):
        WorkerSettings.from_env({"CODE_HMAC_KEY": "é" * 15 + "x"})


def test_smtp_tls_and_ssl_exclude_each_other():
    assert WorkerSettings.from_env({"SMTP_USE_SSL": "yes", "SMTP_USE_TLS": "no"}).smtp_use_ssl
    with pytest.raises(SettingsError, match=r"SMTP_USE_TLS .* SMTP_USE_SSL"):
        WorkerSettings.from_env({"SMTP_USE_SSL": "on", "SMTP_USE_TLS": "1"})


def test_rate_limit_storage_defaults_to_redis_url_and_may_differ():
    env = {"JWT_SECRET": LONG, "REDIS_URL": "redis://cache:6379/2"}
    assert AuthSettings.from_env(env).ratelimit_storage_uri == "redis://cache:6379/2"
    assert AuthSettings.from_env({**env, "RATELIMIT_STORAGE_URI": "memory://"}).ratelimit_storage_uri == "memory://"


@pytest.mark.parametrize("limits", ["lots", "10/fortnight", "10 per", "/minute"])
def test_rate_limits_are_checked_with_flask_limiters_parser(limits):
    with pytest.raises(SettingsError, match=r"^RATELIMIT_REGISTER_PER_IP: must be limits like"):
        AuthSettings.from_env({"APP_ENV": "development", "RATELIMIT_REGISTER_PER_IP": limits})
    good = "5/second;10 per minute"
    assert AuthSettings.from_env(
        {"APP_ENV": "development", "RATELIMIT_REGISTER_PER_IP": good}
    ).ratelimit_register_per_ip


def test_both_services_read_the_shared_settings_alike():
    shared = ServiceSettings.setting_names()
    assert {
        "RABBITMQ_URL",
        "REDIS_URL",
        "APP_ENV",
        "LOG_LEVEL",
        "RETRY_DELAYS_SECONDS",
        "ACCOUNT_CREATION_QUEUE",
    } <= shared
    assert shared <= AuthSettings.setting_names() & WorkerSettings.setting_names()
    env = {
        "APP_ENV": "development",
        "RABBITMQ_URL": "amqp://u:p@broker:5672/%2F",
        "ACCOUNT_CREATION_QUEUE": "a",
        "CONFIRM_EMAIL_CODE_QUEUE": "b",
        "ACCOUNT_CONFIRMED_QUEUE": "c",
        "ACCOUNT_NOTIFICATIONS_QUEUE": "d",
        "RETRY_DELAYS_SECONDS": "1,2",
        "LOG_LEVEL": "warning",
    }
    auth, worker = AuthSettings.from_env(env), WorkerSettings.from_env(env)
    for name in ServiceSettings.fields:
        assert getattr(auth, name) == getattr(worker, name), name
    assert auth.work_queues == worker.work_queues == ["a", "b", "c", "d"]


# --- secrets stay secret


SECRET_ENV = {
    "JWT_SECRET": "jwt-secret-value-that-is-long-enough-0123",
    "CODE_HMAC_KEY": "code-key-value-that-is-long-enough-01234567",
    "SMTP_PASSWORD": "smtp-password-value",
    "RABBITMQ_URL": "amqp://user:rabbit-password-value@broker:5672/%2F",
    "REDIS_URL": "redis://:redis-password-value@cache:6379/0",
    "MONGO_URI": "mongodb://user:mongo-password-value@db:27017",
}


def test_secrets_never_show_in_a_repr():
    shown = repr(AuthSettings.from_env(SECRET_ENV)) + repr(WorkerSettings.from_env(SECRET_ENV))
    shown += str(AuthSettings.from_env(SECRET_ENV)) + str(WorkerSettings.from_env(SECRET_ENV))
    for secret in ("jwt-secret", "code-key", "smtp-password", "rabbit-password", "redis-password", "mongo-password"):
        assert secret not in shown
    assert WorkerSettings.from_env(SECRET_ENV).smtp_password.get_secret_value() == "smtp-password-value"


def test_a_refused_secret_is_not_echoed():
    with pytest.raises(SettingsError) as refused:
        AuthSettings.from_env({"JWT_SECRET": "short-jwt-secret-value"})
    assert "short-jwt-secret-value" not in str(refused.value)


@pytest.mark.parametrize(
    ("module", "env"), [("auth_service", {"AUTH_PORT": "eighty"}), ("email_service", {"SMTP_USE_SSL": "maybe"})]
)
def test_a_service_refuses_to_start_with_one_line_naming_the_bad_setting(module, env, tmp_path):
    """The process exits 2 before it opens any connection, with the reason on stderr."""
    process_env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "APP_ENV": "development", **env}
    result = subprocess.run(
        [sys.executable, "-m", module], env=process_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{module}: {next(iter(env))}: ")


def test_the_http_edge_settings_have_defaults_and_bounds():
    settings = AuthSettings.from_env({"JWT_SECRET": LONG})
    assert (
        settings.auth_connection_limit,
        settings.auth_channel_timeout_seconds,
        settings.auth_cleanup_interval_seconds,
    ) == (
        1000,
        30,
        10,
    )
    assert (settings.auth_threads, settings.confirm_max_waiting) == (32, 16)
    assert settings.ratelimit_store_timeout_seconds == 0.25
    assert settings.ratelimit_store_options == {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
    assert AuthSettings.from_env({"JWT_SECRET": LONG, "AUTH_THREADS": "8"}).confirm_max_waiting == 4
    # Waiting confirms must always leave a thread to everything else.
    for env in ({"CONFIRM_MAX_WAITING": "32"}, {"CONFIRM_MAX_WAITING": "0"}, {"AUTH_THREADS": "1"}):
        with pytest.raises(SettingsError):
            AuthSettings.from_env({"JWT_SECRET": LONG, **env})


def test_the_trusted_proxy_is_loopback_unless_named_and_only_with_proxy_hops():
    def trusted(**env):
        return AuthSettings.from_env({"JWT_SECRET": LONG, **env}).trusted_proxy

    assert trusted() is None
    assert trusted(PROXY_HOPS="1") == "127.0.0.1"
    assert trusted(PROXY_HOPS="1", TRUSTED_PROXY="10.0.0.7") == "10.0.0.7"
    assert trusted(PROXY_HOPS="2", TRUSTED_PROXY="::0001") == "::1"
    assert trusted(PROXY_HOPS="1", TRUSTED_PROXY="*") == "*"
    for env in (
        {"PROXY_HOPS": "1", "TRUSTED_PROXY": "proxy.internal"},  # waitress compares addresses, not names
        {"PROXY_HOPS": "1", "TRUSTED_PROXY": "10.0.0.0/8"},
        {"PROXY_HOPS": "1", "TRUSTED_PROXY": "10.0.0.7,10.0.0.8"},
        {"TRUSTED_PROXY": "10.0.0.7"},  # without PROXY_HOPS it would silently trust nobody
    ):
        with pytest.raises(SettingsError, match="TRUSTED_PROXY"):
            AuthSettings.from_env({"JWT_SECRET": LONG, **env})
