"""Request limits per client IP and per address: the Nth request passes, the N+1th gets 429."""

from __future__ import annotations

import pytest
from waitress.adjustments import Adjustments
from waitress.proxy_headers import proxy_headers_middleware
from werkzeug.test import Client

from auth_service.config import Settings
from auth_service.entrypoints import server
from auth_service.entrypoints.http import ratelimits
from common.settings import SettingsError

PASSWORD = "correct horse battery"
GENEROUS = "1000/hour"
RATE_LIMITS = [name for name in Settings.fields if name.startswith("ratelimit_") and "_per_" in name]


def limited(**limits: str) -> dict[str, str]:
    """Rate limits on, every limit generous except the ones a test names."""
    env = {"RATELIMIT_ENABLED": "true", "RATELIMIT_STORAGE_URI": "memory://"}
    for setting in RATE_LIMITS:
        env[setting.upper()] = limits.pop(setting.removeprefix("ratelimit_"), GENEROUS)
    assert not limits, f"unknown limits {limits}"
    return env


def from_ip(ip: str) -> dict:
    return {"REMOTE_ADDR": ip}


MINUTE = 60
HOUR = 3600
DAY = 86400


def assert_rate_limited(response, window: int = HOUR) -> None:
    """A contract 429 whose Retry-After points at the end of the breached window."""
    assert response.status_code == 429
    assert response.json["error"] == "rate_limited"
    assert response.json["message"]
    retry_after = int(response.headers["Retry-After"])
    assert window - 60 <= retry_after <= window


def register(client, email, ip="198.51.100.1", password=PASSWORD):
    return client.post("/auth/register", json={"email": email, "password": password}, environ_base=from_ip(ip))


def confirm(client, email, code="000000", ip="198.51.100.1"):
    return client.post("/auth/confirm", json={"email": email, "code": code}, environ_base=from_ip(ip))


def resend(client, email, ip="198.51.100.1"):
    return client.post("/auth/resend-code", json={"email": email}, environ_base=from_ip(ip))


def login(client, email, password=PASSWORD, ip="198.51.100.1"):
    return client.post("/auth/login", json={"email": email, "password": password}, environ_base=from_ip(ip))


def test_register_per_ip_limit(make_system, unique_email):
    client = make_system(limited(register_per_ip="3/hour")).client
    for _ in range(3):
        assert register(client, unique_email()).status_code == 201
    assert_rate_limited(register(client, unique_email()))
    assert register(client, unique_email(), ip="198.51.100.2").status_code == 201


def test_register_per_address_limit_ignores_case_and_spaces(make_system, unique_email):
    client = make_system(limited(register_per_address="2/hour")).client
    email = unique_email()
    assert register(client, email, ip="198.51.100.1").status_code == 201
    assert register(client, f"  {email.upper()} ", ip="198.51.100.2").status_code == 201  # takes it over
    assert_rate_limited(register(client, email, ip="198.51.100.3"))
    assert register(client, unique_email(), ip="198.51.100.3").status_code == 201


def test_confirm_per_ip_limit(make_system, unique_email):
    client = make_system(limited(confirm_per_ip="4/hour")).client
    for _ in range(4):
        assert confirm(client, unique_email()).status_code == 410
    assert_rate_limited(confirm(client, unique_email()))


def test_confirm_per_address_limit_counts_wrong_codes_per_address_and_ip(make_system, unique_email):
    system = make_system(limited(confirm_per_address="3/day"))
    email = unique_email()
    assert register(system.client, email).status_code == 201
    for _ in range(3):
        assert confirm(system.client, email, "000000", ip="203.0.113.1").status_code in (400, 429)
    assert_rate_limited(confirm(system.client, email, "000000", ip="203.0.113.1"), DAY)
    # Another client's guesses at the address are its own: the owner's right code goes through.
    assert confirm(system.client, email, system.codes_for(email)[0], ip="203.0.113.99").status_code == 200


def test_resend_per_ip_limit(make_system, unique_email):
    client = make_system(limited(resend_per_ip="3/hour")).client
    for _ in range(3):
        assert resend(client, unique_email()).status_code == 202
    assert_rate_limited(resend(client, unique_email()))


def test_resend_per_address_limit(make_system, unique_email):
    system = make_system({**limited(resend_per_address="2/hour"), "RESEND_COOLDOWN_SECONDS": "0"})
    email = unique_email()
    assert resend(system.client, email, ip="203.0.113.1").status_code == 202
    assert resend(system.client, email, ip="203.0.113.2").status_code == 202
    assert_rate_limited(resend(system.client, email, ip="203.0.113.3"))


def test_login_per_ip_limit(make_system, unique_email):
    client = make_system(limited(login_per_ip="3/minute")).client
    for _ in range(3):
        assert login(client, unique_email()).status_code == 401
    assert_rate_limited(login(client, unique_email()), 60)


def verified_account(system, email):
    register(system.client, email, ip="192.0.2.1")
    [code] = system.codes_for(email)
    assert confirm(system.client, email, code, ip="192.0.2.1").status_code == 200


def test_login_per_address_limit_counts_failures_only(make_system, unique_email):
    system = make_system(limited(login_failures_per_address="3/day"))
    email = unique_email()
    verified_account(system, email)
    for _ in range(5):  # successes are not counted
        assert login(system.client, email).status_code == 200
    for n in range(3):
        assert login(system.client, email, "wrong password", ip=f"203.0.113.{n}").status_code == 401
    assert_rate_limited(login(system.client, email, ip="203.0.113.50"), DAY)
    assert login(system.client, unique_email(), ip="203.0.113.50").status_code == 401


def test_the_per_address_limit_answers_before_a_lock_and_alike_for_every_address(make_system, unique_email):
    """docs/security.md, "Failed logins and locks, beside the per-address limit"."""
    env = {**limited(login_failures_per_address="6/minute"), "LOCKOUT_THRESHOLD": "4"}
    env["FAILED_LOGIN_WARNING_THRESHOLD"] = "2"
    system = make_system(env)
    email, nobody = unique_email(), unique_email()
    verified_account(system, email)
    for _ in range(4):
        assert login(system.client, email, "wrong password").status_code == 401
    # Locked: the right password answers the 401 of a wrong one, and counts like one.
    locked = [login(system.client, email) for _ in range(2)]
    assert [response.status_code for response in locked] == [401, 401]
    assert_rate_limited(login(system.client, email), MINUTE)
    # An address with no account, past the same limit, gets the same 429: it tells nothing of the lock.
    for _ in range(6):
        assert login(system.client, nobody).status_code == 401
    assert_rate_limited(login(system.client, nobody), MINUTE)


def test_requests_without_an_address_count_against_the_ip_only(make_system):
    client = make_system(limited(register_per_ip="2/hour", register_per_address="1/hour")).client
    for _ in range(2):
        assert client.post("/auth/register", json={"password": PASSWORD}).status_code == 422
    assert_rate_limited(client.post("/auth/register", json={"password": PASSWORD}))


def test_limits_are_off_when_disabled(make_system, unique_email):
    env = {**limited(login_per_ip="1/hour"), "RATELIMIT_ENABLED": "false"}
    client = make_system(env).client
    for _ in range(3):
        assert login(client, unique_email()).status_code == 401


def test_forwarded_for_is_ignored_without_trusted_proxies(make_system, unique_email):
    client = make_system(limited(login_per_ip="2/hour")).client
    for n in range(2):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        response = client.post("/auth/login", json={"email": unique_email(), "password": PASSWORD}, headers=headers)
        assert response.status_code == 401
    spoofed = client.post(
        "/auth/login", json={"email": unique_email(), "password": PASSWORD}, headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert_rate_limited(spoofed)


def behind_waitress(system) -> Client:
    """The app wrapped in waitress's proxy-header handling as the server wraps it, with the server's own options."""
    adjustments = Adjustments(**server.server_options(system.auth_settings))
    assert adjustments.trusted_proxy_count is not None  # waitress sets 1 when it is not given
    return Client(
        proxy_headers_middleware(
            system.auth.app,
            trusted_proxy=adjustments.trusted_proxy,
            trusted_proxy_count=adjustments.trusted_proxy_count,
            trusted_proxy_headers=adjustments.trusted_proxy_headers,
            clear_untrusted=adjustments.clear_untrusted_proxy_headers,
        )
    )


def test_one_trusted_proxy_makes_the_forwarded_address_the_client(make_system, unique_email):
    client = behind_waitress(make_system({**limited(login_per_ip="2/hour"), "PROXY_HOPS": "1"}))

    def via(forwarded, peer="127.0.0.1"):
        return client.post(
            "/auth/login",
            json={"email": unique_email(), "password": PASSWORD},
            headers={"X-Forwarded-For": forwarded},
            environ_base=from_ip(peer),
        )

    assert via("203.0.113.1").status_code == 401
    assert via("198.51.100.7, 203.0.113.1").status_code == 401
    # The client cannot escape its own counter by prepending addresses of its choice.
    assert_rate_limited(via("198.51.100.8, 203.0.113.1"))
    assert via("203.0.113.2").status_code == 401
    # A peer other than the trusted proxy is its own client, whatever it claims.
    assert via("203.0.113.3", peer="10.0.0.5").status_code == 401
    assert via("203.0.113.4", peer="10.0.0.5").status_code == 401
    assert_rate_limited(via("203.0.113.5", peer="10.0.0.5"))


def test_without_proxy_hops_waitress_believes_no_forwarded_header(make_system, unique_email):
    client = behind_waitress(make_system(limited(login_per_ip="2/hour")))

    def claiming(forwarded):
        return client.post(
            "/auth/login",
            json={"email": unique_email(), "password": PASSWORD},
            headers={"X-Forwarded-For": forwarded},
            environ_base=from_ip("127.0.0.1"),
        )

    assert claiming("203.0.113.1").status_code == 401
    assert claiming("203.0.113.2").status_code == 401
    assert_rate_limited(claiming("203.0.113.9"))


def test_a_padded_address_counts_against_the_plain_one(make_system, unique_email):
    env = {**limited(login_failures_per_address="3/day", resend_per_address="2/hour"), "RESEND_COOLDOWN_SECONDS": "0"}
    system = make_system(env)
    email = unique_email()
    verified_account(system, email)
    for n in range(3):
        assert login(system.client, email, "wrong password", ip=f"203.0.113.{n}").status_code == 401
    # Longer than any address once padded, but the schema trims it: it is the same address.
    assert_rate_limited(login(system.client, " " * 250 + email.upper() + "\t"), DAY)

    other = unique_email()
    assert resend(system.client, " " * 300 + other).status_code == 202
    assert resend(system.client, other.upper()).status_code == 202
    assert_rate_limited(resend(system.client, f"\n{other} "))


def test_limit_store_down_falls_back_to_per_process_limits(make_system, unique_email, caplog):
    # Nothing listens on port 1 of 127.0.0.1: every Redis call fails at once.
    env = {**limited(login_per_ip="2/hour"), "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0"}
    client = make_system(env).client
    for _ in range(2):
        assert login(client, unique_email()).status_code == 401
    assert_rate_limited(login(client, unique_email()))
    assert "falling back to in-memory storage" in caplog.text


def test_limit_strings_are_checked_at_start():
    with pytest.raises(SettingsError, match="RATELIMIT_LOGIN_PER_IP"):
        Settings.from_env({"APP_ENV": "development", "RATELIMIT_LOGIN_PER_IP": "lots"})


def test_address_key_does_not_spell_out_the_address(make_system):
    app = make_system().auth.app
    with app.test_request_context("/auth/login", json={"email": " Ada@Example.com "}):
        key = ratelimits.address_key()
    with app.test_request_context("/auth/login", json={"email": "ada@example.com"}):
        assert ratelimits.address_key() == key
    with app.test_request_context("/auth/login", json={"email": " " * 250 + "ADA@example.com\n"}):
        assert ratelimits.address_key() == key
    assert "ada" not in key


@pytest.mark.parametrize("email", [None, 42, "", "   ", "not an address", "a" * 300 + "@example.com"])
def test_an_address_the_schema_refuses_counts_against_the_ip_only(make_system, email):
    app = make_system().auth.app
    with app.test_request_context("/auth/login", json={"email": email}):
        assert ratelimits.no_address()
