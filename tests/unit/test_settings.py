import pytest

from auth_service.config import Settings as AuthSettings
from common.settings import SettingsError
from email_service.config import Settings as WorkerSettings

LONG = "x" * 32


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
    assert len(settings.jwt_secret.encode()) >= 32
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


def test_the_http_edge_settings_have_defaults_and_bounds():
    settings = AuthSettings.from_env({"JWT_SECRET": LONG})
    assert (settings.connection_limit, settings.channel_timeout_seconds, settings.cleanup_interval_seconds) == (
        1000,
        30,
        10,
    )
    assert (settings.server_threads, settings.confirm_max_waiting) == (32, 16)
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
