"""Request limits of the reset, address-change and link endpoints: the Nth request passes, the N+1th is 429."""

from __future__ import annotations

from tests.unit.test_lifecycle import bearer, change_email, confirm_email, forgot
from tests.unit.test_rate_limits import assert_rate_limited, from_ip, limited
from tests.unit.test_sessions import login, sign_up

LINK = "0123456789abcdef0123456789abcdef." + "A" * 43


def test_forgot_per_ip_and_per_address_limits(make_system, unique_email):
    system = make_system(
        {**limited(forgot_per_ip="3/hour", forgot_per_address="2/hour"), "RESEND_COOLDOWN_SECONDS": "0"}
    )
    email = unique_email()
    assert forgot(system, email, environ_base=from_ip("198.51.100.1")).status_code == 202
    assert forgot(system, email.upper(), environ_base=from_ip("198.51.100.2")).status_code == 202
    assert_rate_limited(forgot(system, email, environ_base=from_ip("198.51.100.3")))
    for _ in range(2):
        assert forgot(system, unique_email(), environ_base=from_ip("198.51.100.4")).status_code == 202
    assert forgot(system, unique_email(), environ_base=from_ip("198.51.100.4")).status_code == 202
    assert_rate_limited(forgot(system, unique_email(), environ_base=from_ip("198.51.100.4")))


def test_reset_per_address_limit_counts_wrong_codes_per_address_and_ip(make_system, unique_email):
    system = make_system(limited(reset_per_address="3/day"))
    email = unique_email()

    def guess(ip):
        body = {"email": email, "code": "123456", "new_password": "a brand new passphrase 7"}
        return system.client.post("/auth/password/reset", json=body, environ_base=from_ip(ip))

    for _ in range(3):
        assert guess("198.51.100.1").status_code == 400
    assert_rate_limited(guess("198.51.100.1"), window=86400)
    assert guess("198.51.100.2").status_code == 400  # another client: its own count


def test_email_change_per_new_address_limit(make_system, unique_email):
    system = make_system({**limited(email_change_per_address="1/hour"), "RESEND_COOLDOWN_SECONDS": "0"})
    target = unique_email()
    tokens = []
    for _ in range(2):
        email = unique_email()
        sign_up(system, email)
        tokens.append(login(system, email)["access_token"])
    assert change_email(system, tokens[0], target).status_code == 202
    assert_rate_limited(change_email(system, tokens[1], target.upper()))


def test_wrong_passwords_at_email_change_and_password_change_share_one_budget(make_system, unique_email):
    system = make_system(limited(password_change_failures_per_account="2/day"))
    email = unique_email()
    sign_up(system, email)
    token = login(system, email)["access_token"]
    assert change_email(system, token, unique_email(), "wrong password 1").status_code == 401
    answer = system.client.post(
        "/auth/password/change",
        json={"current_password": "wrong password 2", "new_password": "a brand new passphrase 7"},
        headers=bearer(token),
    )
    assert answer.status_code == 401
    assert_rate_limited(change_email(system, token, unique_email(), "wrong password 3"), window=86400)


def test_email_confirm_per_account_limit(make_system, unique_email):
    system = make_system(limited(email_confirm_per_account="2/day"))
    email = unique_email()
    sign_up(system, email)
    token = login(system, email)["access_token"]
    for _ in range(2):
        assert confirm_email(system, token, "123456").status_code == 410
    assert_rate_limited(confirm_email(system, token, "123456"), window=86400)


def test_verify_link_per_account_limit_counts_the_page_and_the_button_per_ip(make_system):
    system = make_system(limited(verify_link_per_account="2/day"))
    prober = from_ip("198.51.100.1")
    assert system.client.get(f"/auth/verify?token={LINK}", environ_base=prober).status_code == 400
    assert system.client.post("/auth/verify", data={"token": LINK}, environ_base=prober).status_code == 400
    assert_rate_limited(system.client.post("/auth/verify", data={"token": LINK}, environ_base=prober), window=86400)
    # Junk carrying the account id from one address does not switch the owner's link off elsewhere.
    answer = system.client.post("/auth/verify", data={"token": LINK}, environ_base=from_ip("198.51.100.2"))
    assert answer.status_code == 400
    other = "fedcba9876543210fedcba9876543210." + "A" * 43
    assert system.client.post("/auth/verify", data={"token": other}, environ_base=prober).status_code == 400
