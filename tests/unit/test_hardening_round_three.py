"""Hardening against a targeted lockout, silent sign-ins and guessing, on fakes: the rules behind each
finding (docs/security.md, under the same title); the attacks themselves run on the real processes in
tests/integration/test_hardening_round_three.py.
"""

from __future__ import annotations

from email_service.domain.notices import printable_device
from tests.unit.test_account_events import CHROME_ON_WINDOWS, events, notices
from tests.unit.test_lifecycle import NEW_PASSWORD, bearer, change_email, reset, reset_code
from tests.unit.test_rate_limits import assert_rate_limited, limited
from tests.unit.test_sessions import PASSWORD, login, sign_up
from tests.unit.test_sign_in import (
    LAPTOP,
    PHONE,
    ask_code,
    next_code_allowed,
    password_login,
    set_mfa,
    sign_in_code,
    verify_challenge,
)

# --- 6. a sign-in by code is a sign-in ---


def test_a_sign_in_by_code_remembers_the_device_and_announces_a_new_one(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    login(system, email)  # the first login: nothing to compare with
    assert ask_code(system, email).status_code == 202
    answer = system.client.post(
        "/auth/login/code/verify",
        json={"email": email, "code": sign_in_code(system, email)},
        headers={"User-Agent": CHROME_ON_WINDOWS},
    )
    assert answer.status_code == 200, answer.json
    [new] = events(system, "user.login_new_device")
    assert new.body["device"] == "Chrome 120, Windows 10"
    [notice] = notices(system, email, "New sign-in")
    assert "/auth/not-me?token=" in notice.body


# --- 7. what a notice prints of a device ---


def test_the_worker_prints_only_a_label_of_known_names_whatever_the_event_says():
    assert printable_device("Chrome 120, Windows 10") == "Chrome 120, Windows 10"
    for written in ("unknown", "Browser/9 (Laptop)", "visit http://evil.example", "x" * 81, "", "a\nb", "evil.com"):
        assert printable_device(written) is None, written


# --- 12. a new password forgets the devices the second factor trusted ---


def trusted(system, email, headers, password) -> dict:
    next_code_allowed(system)
    challenge = password_login(system, email, password, headers=headers).json["challenge"]
    answer = verify_challenge(system, challenge, sign_in_code(system, email), headers=headers)
    assert answer.status_code == 200, answer.json
    assert password_login(system, email, password, headers=headers).status_code == 200
    return answer.json


def test_a_password_change_and_a_reset_each_forget_every_trusted_device(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    assert set_mfa(system, login(system, email)["access_token"], True).status_code == 200
    tokens = trusted(system, email, PHONE, PASSWORD)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    changed = system.client.post("/auth/password/change", json=change, headers=bearer(tokens["access_token"]))
    assert changed.status_code == 200
    next_code_allowed(system)
    assert password_login(system, email, NEW_PASSWORD, headers=PHONE).status_code == 202

    trusted(system, email, LAPTOP, NEW_PASSWORD)
    next_code_allowed(system)
    assert reset(system, email, reset_code(system, email), PASSWORD).status_code == 200
    next_code_allowed(system)
    assert password_login(system, email, PASSWORD, headers=LAPTOP).status_code == 202


# --- 13. one quota per account for actions that mail its own address ---


def test_address_change_requests_and_second_factor_switches_share_one_quota_per_account(make_system, unique_email):
    system = make_system({**limited(notices_per_account="4/hour"), "RESEND_COOLDOWN_SECONDS": "0"})
    email, other = unique_email(), unique_email()
    sign_up(system, email)
    sign_up(system, other)
    token, others = login(system, email)["access_token"], login(system, other)["access_token"]
    answers = []
    for round_ in range(3):
        answers.append(set_mfa(system, token, round_ % 2 == 0).status_code)
        answers.append(change_email(system, token, unique_email()).status_code)
    assert answers == [200, 202, 200, 202, 429, 429]
    assert_rate_limited(set_mfa(system, token, True))
    # Another account's quota is its own; a forged token spends nobody's.
    assert set_mfa(system, others, True).status_code == 200
    assert set_mfa(system, "forged." + token, True).status_code == 401


# --- 4. the owner's recovery does not share the attacker's counters ---


def test_a_proven_device_is_let_through_the_lock_and_the_per_address_failure_limit(make_system, unique_email):
    lock_at_three = {"LOCKOUT_THRESHOLD": "3", "FAILED_LOGIN_WARNING_THRESHOLD": "2"}
    system = make_system({**limited(login_failures_per_address="3/minute"), **lock_at_three})
    email = unique_email()
    sign_up(system, email)
    assert password_login(system, email, headers=PHONE).status_code == 200  # the phone signs in: proven
    for _ in range(3):
        assert password_login(system, email, "a wrong password", headers=LAPTOP).status_code == 401
    assert_rate_limited(password_login(system, email, headers=LAPTOP), 60)  # the attacker's device: refused
    assert password_login(system, email, headers=PHONE).status_code == 200  # locked and limited, not for it
    # Its own wrong passwords spend a budget of its own, nobody else's.
    for _ in range(3):
        assert password_login(system, email, "a wrong password", headers=PHONE).status_code == 401
    assert_rate_limited(password_login(system, email, headers=PHONE), 60)


def test_a_reset_clears_the_addresss_failed_login_counters(make_system, unique_email):
    system = make_system({**limited(login_failures_per_address="3/day"), "RESEND_COOLDOWN_SECONDS": "0"})
    email = unique_email()
    sign_up(system, email)
    for _ in range(3):
        assert password_login(system, email, "a wrong password", headers=LAPTOP).status_code == 401
    assert_rate_limited(password_login(system, email, headers=LAPTOP), 86400)
    assert reset(system, email, reset_code(system, email)).status_code == 200
    assert password_login(system, email, NEW_PASSWORD, headers=LAPTOP).status_code == 200


def test_only_refused_codes_count_against_an_address_from_one_ip(make_system, unique_email):
    system = make_system({**limited(reset_per_address="2/day"), "RESEND_COOLDOWN_SECONDS": "0"})
    email = unique_email()
    sign_up(system, email)
    assert reset(system, email, reset_code(system, email)).status_code == 200
    assert reset(system, email, reset_code(system, email), PASSWORD).status_code == 200
    assert reset(system, email, reset_code(system, email)).status_code == 200  # right codes spend nothing


def test_a_forgot_over_the_quota_leaves_the_live_reset_code(make_system, unique_email):
    system = make_system({"MAX_CODES_PER_HOUR": "2", "RESEND_COOLDOWN_SECONDS": "0"})
    email = unique_email()
    sign_up(system, email)
    reset_code(system, email)
    last = reset_code(system, email)
    for _ in range(3):  # over the quota: nothing mailed, nothing voided
        assert system.client.post("/auth/password/forgot", json={"email": email}).status_code == 202
    assert reset_code(system, email) == last
    assert reset(system, email, last).status_code == 200
