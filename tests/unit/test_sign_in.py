"""Sign-in by emailed code, on fakes: the second factor after a password, and sign-in without one.

The same handlers and use cases as production (auth, the worker's code handlers,
auth's consumer) on mongomock, fakeredis and the in-memory broker.
"""

from __future__ import annotations

import logging
import re

import pytest

from auth_service.domain.challenges import challenge_hash
from auth_service.domain.devices import device_identity, device_key
from auth_service.domain.passwords import PasswordHasher
from common.messaging.consumer import Result
from common.messaging.messages import Purpose
from tests.unit.test_account_events import not_me_token, press
from tests.unit.test_lifecycle import bearer, change_email, code_in, confirm_email, forgot, mails_to, reset
from tests.unit.test_rate_limits import assert_rate_limited, from_ip, limited
from tests.unit.test_sessions import PASSWORD, assert_pair, at_once, database, login, me, sign_up

SIGN_IN_SUBJECT = "sign-in code"
PHONE = {"X-Device-Id": "phone-1"}
LAPTOP = {"X-Device-Id": "laptop-1"}


def set_mfa(system, access_token, enabled, password=PASSWORD):
    body = {"enabled": enabled, "password": password}
    return system.client.post("/auth/mfa", json=body, headers=bearer(access_token))


def password_login(system, email, password=PASSWORD, headers=PHONE):
    return system.client.post("/auth/login", json={"email": email, "password": password}, headers=headers)


def verify_challenge(system, challenge, code, headers=PHONE):
    return system.client.post("/auth/login/verify", json={"challenge": challenge, "code": code}, headers=headers)


def ask_code(system, email):
    return system.client.post("/auth/login/code", json={"email": email})


def verify_code(system, email, code):
    return system.client.post("/auth/login/code/verify", json={"email": email, "code": code})


def sign_in_code(system, email) -> str:
    return code_in(mails_to(system, email, SIGN_IN_SUBJECT)[-1])


def next_code_allowed(system) -> None:
    """Past the cooldown; the test clock moves too, so the next code request is a newer one."""
    system.cooldown_clock.advance(system.auth_settings.resend_cooldown_seconds)
    system.clock.advance(1)


def challenged(system, email, headers=PHONE) -> str:
    """A right-password login that the second factor stops; returns the challenge."""
    answer = password_login(system, email, headers=headers)
    assert answer.status_code == 202, answer.json
    assert set(answer.json) == {"mfa_required", "challenge"} and answer.json["mfa_required"] is True
    return answer.json["challenge"]


@pytest.fixture
def account(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    return {"email": email, **login(system, email)}


@pytest.fixture
def mfa_account(system, account):
    assert set_mfa(system, account["access_token"], True).json == {"mfa": "email"}
    return account


# --- the switch ---


def test_turning_the_second_factor_on_and_off_answers_its_state_and_mails_a_notice_per_change(system, account):
    email, token = account["email"], account["access_token"]
    answer = set_mfa(system, token, True)
    assert (answer.status_code, answer.json) == (200, {"mfa": "email"})
    assert set_mfa(system, token, True).json == {"mfa": "email"}  # no change, no second notice
    [on] = mails_to(system, email, "turned on")
    assert (set_mfa(system, token, False).status_code, set_mfa(system, token, False).json) == (200, {"mfa": "off"})
    [off] = mails_to(system, email, "turned off")
    for notice in (on, off):
        assert not re.search(r"\b\d{6}\b", notice.body) and notice.html
    assert password_login(system, email).status_code == 200


def test_the_switch_needs_the_password_and_a_valid_token(system, account):
    wrong = set_mfa(system, account["access_token"], True, password="not the password at all")
    assert (wrong.status_code, wrong.json["error"]) == (401, "invalid_credentials")
    no_token = system.client.post("/auth/mfa", json={"enabled": True, "password": PASSWORD})
    assert (no_token.status_code, no_token.json["error"]) == (401, "invalid_token")
    assert password_login(system, account["email"]).status_code == 200  # still off
    assert mails_to(system, account["email"], "turned") == []


@pytest.mark.parametrize("enabled", ["yes", 1, "true", None])
def test_the_switch_is_a_json_boolean(system, account, enabled):
    answer = set_mfa(system, account["access_token"], enabled)
    assert (answer.status_code, answer.json["error"]) == (422, "validation_error")
    assert "enabled" in answer.json["fields"]


# --- the notices' "this wasn't me" link ---


def reset_mails(system, email) -> list:
    return mails_to(system, email, "Reset")


def assert_secured(system, email, pair) -> None:
    """What every "this wasn't me" link does: the sessions end and a reset code goes to the notice's address."""
    assert me(system, pair["access_token"]).status_code == 401
    assert system.client.post("/auth/token/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    [reset_mail] = reset_mails(system, email)
    # The same password again keeps the helpers' logins working; the code is what is tested.
    assert reset(system, email, code_in(reset_mail), new_password=PASSWORD).status_code == 200


def test_the_second_factor_turned_on_notice_link_signs_out_forgets_devices_and_leaves_it_on(system, mfa_account):
    email = mfa_account["email"]
    pair = assert_pair(verify_challenge(system, challenged(system, email), sign_in_code(system, email)))
    assert_pair(password_login(system, email))  # the phone is trusted
    [on] = mails_to(system, email, "turned on")
    token = not_me_token(on)
    assert system.client.get(f"/auth/not-me?token={token}").status_code == 200
    assert press(system, token).status_code == 200
    assert_secured(system, email, pair)
    assert press(system, token).status_code == 410  # once
    # Left on (turning it off would weaken the account), and the phone passes it afresh.
    assert database(system)["users"].find_one({"email": email})["mfa_enabled"] is True
    next_code_allowed(system)
    challenged(system, email)


def test_the_second_factor_turned_off_notice_link_turns_it_back_on(system, mfa_account):
    email = mfa_account["email"]
    pair = assert_pair(verify_challenge(system, challenged(system, email), sign_in_code(system, email)))
    assert set_mfa(system, pair["access_token"], False).json == {"mfa": "off"}
    [off] = mails_to(system, email, "turned off")
    assert "turns sign-in codes on again" in off.body
    assert press(system, not_me_token(off)).status_code == 200
    assert_secured(system, email, pair)
    next_code_allowed(system)
    challenged(system, email)  # on again, and the phone it trusted is asked afresh
    assert len(mails_to(system, email, "turned on")) == 1  # the restore mails no notice of its own


def test_the_turned_off_notice_link_takes_the_address_back_and_turns_the_factor_on(system, account, unique_email):
    email, moved = account["email"], unique_email()
    assert set_mfa(system, account["access_token"], True).status_code == 200
    assert set_mfa(system, account["access_token"], False).status_code == 200
    [off] = mails_to(system, email, "turned off")
    assert change_email(system, account["access_token"], moved).status_code == 202
    [change_code] = [code_in(mail) for mail in mails_to(system, moved)]
    assert confirm_email(system, account["access_token"], change_code).status_code == 200
    # Within the undo window the notice's address is taken back, so its codes go to the notice's reader.
    assert press(system, not_me_token(off)).status_code == 200
    assert database(system)["users"].find_one({"email": email})["mfa_enabled"] is True
    assert me(system, account["access_token"]).status_code == 401
    assert len(reset_mails(system, email)) == 1  # to the address that got the notice, the login again


def test_the_turned_off_notice_link_past_the_undo_window_does_nothing(make_system, unique_email):
    system = make_system({"EMAIL_UNDO_WINDOW_SECONDS": "3600"})
    email, moved = unique_email(), unique_email()
    sign_up(system, email)
    token = login(system, email)["access_token"]
    assert set_mfa(system, token, True).status_code == 200
    assert set_mfa(system, token, False).status_code == 200
    [off] = mails_to(system, email, "turned off")
    assert change_email(system, token, moved).status_code == 202
    [change_code] = [code_in(mail) for mail in mails_to(system, moved)]
    assert confirm_email(system, token, change_code).status_code == 200
    system.clock.advance(3601)
    # The address is no longer the account's and the old mailbox's time is over: nothing changes.
    assert press(system, not_me_token(off)).status_code == 410
    stored = database(system)["users"].find_one({"email": moved})
    assert stored["mfa_enabled"] is False and not stored.get("must_reset")
    assert reset_mails(system, email) == []


def test_every_not_me_link_forgets_the_devices_the_second_factor_trusts(system, mfa_account):
    email = mfa_account["email"]
    assert_pair(verify_challenge(system, challenged(system, email), sign_in_code(system, email)))
    next_code_allowed(system)
    intruder = verify_challenge(system, challenged(system, email, headers=LAPTOP), sign_in_code(system, email), LAPTOP)
    assert_pair(intruder)
    new_sign_in = mails_to(system, email, "New sign-in")[-1]  # the laptop's
    assert press(system, not_me_token(new_sign_in)).status_code == 200
    assert reset(system, email, code_in(reset_mails(system, email)[-1]), new_password=PASSWORD).status_code == 200
    next_code_allowed(system)
    challenged(system, email, headers=LAPTOP)


# --- the second factor at login ---


def test_a_login_from_a_new_device_answers_a_challenge_and_the_code_completes_it(system, mfa_account):
    email = mfa_account["email"]
    challenge = challenged(system, email)
    answer = verify_challenge(system, challenge, sign_in_code(system, email))
    pair = assert_pair(answer)
    assert me(system, pair["access_token"]).status_code == 200
    # The device is trusted from then on; another one is asked.
    assert_pair(password_login(system, email))
    next_code_allowed(system)
    challenged(system, email, headers=LAPTOP)


def test_the_challenge_is_stored_only_as_its_hash(system, mfa_account):
    challenge = challenged(system, mfa_account["email"])
    stored = database(system)["sign_in_challenges"].find_one({"_id": challenge_hash(challenge)})
    assert stored is not None and challenge not in repr(stored)
    for name in database(system).list_collection_names():
        assert challenge not in repr(list(database(system)[name].find()))


def test_a_wrong_password_answers_the_same_401_after_the_same_bcrypt_work_with_or_without_the_factor(
    system, account, unique_email, monkeypatch
):
    without = unique_email()
    sign_up(system, without)
    calls: list[str] = []

    def counted(name):
        real = getattr(PasswordHasher, name)
        return lambda self, *args: calls.append(name) or real(self, *args)

    for name in ("verify", "burn_time", "hash"):
        monkeypatch.setattr(PasswordHasher, name, counted(name))
    answers = {}
    for label, email in (("off", without), ("on", account["email"])):
        if label == "on":
            set_mfa(system, account["access_token"], True)
        calls.clear()
        answer = password_login(system, email, password="not the password at all")
        answers[label] = (answer.status_code, answer.json, list(calls))
    assert answers["on"] == answers["off"]
    assert answers["on"][:2] == (401, {"error": "invalid_credentials", "message": "Email or password is incorrect."})
    assert answers["on"][2] == ["verify"]
    assert mails_to(system, account["email"], SIGN_IN_SUBJECT) == []


def test_a_challenge_works_once(system, mfa_account):
    email = mfa_account["email"]
    challenge = challenged(system, email)
    code = sign_in_code(system, email)
    assert_pair(verify_challenge(system, challenge, code))
    again = verify_challenge(system, challenge, code)
    assert (again.status_code, again.json["error"]) == (410, "code_expired")


def test_a_challenge_is_bound_to_the_device_of_its_login(system, mfa_account):
    email = mfa_account["email"]
    challenge = challenged(system, email)
    code = sign_in_code(system, email)
    elsewhere = verify_challenge(system, challenge, code, headers=LAPTOP)
    assert (elsewhere.status_code, elsewhere.json["error"]) == (410, "code_expired")
    assert_pair(verify_challenge(system, challenge, code))  # the code was not spent by the refused try


def test_a_challenge_refuses_the_code_of_another_account(system, mfa_account, unique_email):
    other = unique_email()
    sign_up(system, other)
    assert ask_code(system, other).status_code == 202
    challenge = challenged(system, mfa_account["email"])
    wrong = verify_challenge(system, challenge, sign_in_code(system, other))
    assert (wrong.status_code, wrong.json["error"]) == (400, "invalid_code")
    assert wrong.json["attempts_left"] == system.worker_settings.code_max_attempts - 1
    assert_pair(verify_challenge(system, challenge, sign_in_code(system, mfa_account["email"])))


def test_an_unknown_challenge_answers_as_an_expired_code(system, mfa_account):
    answer = verify_challenge(system, "no-such-challenge", "123456")
    assert (answer.status_code, answer.json["error"]) == (410, "code_expired")


def test_a_newer_login_voids_the_earlier_challenge(system, mfa_account):
    email = mfa_account["email"]
    first = challenged(system, email)
    next_code_allowed(system)
    second = challenged(system, email)
    code = sign_in_code(system, email)
    stale = verify_challenge(system, first, code)
    assert (stale.status_code, stale.json["error"]) == (410, "code_expired")
    next_code_allowed(system)
    third = challenged(system, email)
    assert_pair(verify_challenge(system, third, sign_in_code(system, email)))
    # The second's code was replaced, then the third's spent: no live code, refused as a wrong one.
    assert verify_challenge(system, second, code).json["error"] == "invalid_code"


def test_a_challenge_lives_as_long_as_its_code(system, mfa_account):
    email = mfa_account["email"]
    challenge = challenged(system, email)
    code = sign_in_code(system, email)
    system.clock.advance(system.auth_settings.code_ttl_seconds + 1)
    answer = verify_challenge(system, challenge, code)
    assert (answer.status_code, answer.json["error"]) == (410, "code_expired")


def test_wrong_codes_count_down_then_burn_the_code(system, mfa_account):
    email = mfa_account["email"]
    challenge = challenged(system, email)
    code = sign_in_code(system, email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    attempts = system.worker_settings.code_max_attempts
    for left in range(attempts - 1, 0, -1):
        answer = verify_challenge(system, challenge, wrong)
        assert (answer.status_code, answer.json["error"], answer.json["attempts_left"]) == (400, "invalid_code", left)
    burned = verify_challenge(system, challenge, wrong)
    assert (burned.status_code, burned.json["error"]) == (429, "too_many_attempts")
    assert verify_challenge(system, challenge, code).status_code in (410, 429)


def test_trust_expires_after_mfa_trust_days(make_system, unique_email):
    system = make_system({"MFA_TRUST_DAYS": "2"})
    email = unique_email()
    sign_up(system, email)
    set_mfa(system, login(system, email)["access_token"], True)
    assert_pair(verify_challenge(system, challenged(system, email), sign_in_code(system, email)))
    system.clock.advance(2 * 86400 - 60)
    assert_pair(password_login(system, email))
    system.clock.advance(120)
    next_code_allowed(system)
    challenged(system, email)


def test_turning_the_factor_off_and_on_forgets_every_trusted_device(system, mfa_account):
    email = mfa_account["email"]
    pair = assert_pair(verify_challenge(system, challenged(system, email), sign_in_code(system, email)))
    assert set_mfa(system, pair["access_token"], False).status_code == 200
    assert set_mfa(system, pair["access_token"], True).status_code == 200
    next_code_allowed(system)
    challenged(system, email)


def test_parallel_verifies_of_one_challenge_give_exactly_one_pair(system, mfa_account):
    email = mfa_account["email"]
    challenge = challenged(system, email)
    code = sign_in_code(system, email)
    answers = at_once(6, lambda: verify_challenge(system, challenge, code))
    statuses = sorted(answer.status_code for answer in answers)
    # The others meet the code spent: refused as a code that is not live (a wrong one: 400, then 429 as
    # its attempts run out), or 410 when the challenge was spent first.
    assert statuses[0] == 200 and all(status in (400, 410, 429) for status in statuses[1:]), statuses
    assert sum("access_token" in answer.json for answer in answers) == 1


def test_parallel_spends_of_one_stored_challenge_give_it_to_exactly_one(system, mfa_account):
    challenge = challenged(system, mfa_account["email"])
    challenges = system.auth.sign_in._challenges
    assert sorted(at_once(8, lambda: challenges.spend(challenge_hash(challenge)))) == [False] * 7 + [True]


def test_a_login_within_the_code_cooldown_is_429_with_retry_after(system, mfa_account):
    challenged(system, mfa_account["email"])
    again = password_login(system, mfa_account["email"])
    assert (again.status_code, again.json["error"]) == (429, "rate_limited")
    assert int(again.headers["Retry-After"]) >= 1


def test_no_verdict_in_time_is_503_and_the_broker_away_at_login_is_503(system, mfa_account):
    email = mfa_account["email"]
    challenge = challenged(system, email)
    system.broker.hold.add(system.worker_settings.confirm_email_code_queue)
    late = verify_challenge(system, challenge, sign_in_code(system, email))
    assert (late.status_code, late.json["error"]) == (503, "service_unavailable")
    system.broker.hold.clear()
    next_code_allowed(system)
    system.broker.up = False
    away = password_login(system, email, headers=LAPTOP)
    assert (away.status_code, away.json["error"]) == (503, "service_unavailable")


# --- without a password ---


def test_asking_for_a_code_answers_alike_for_every_address_and_mails_only_a_confirmed_account(system, unique_email):
    confirmed, pending, unknown = unique_email(), unique_email(), unique_email()
    sign_up(system, confirmed)
    assert system.client.post("/auth/register", json={"email": pending, "password": PASSWORD}).status_code == 201
    answers = [ask_code(system, email) for email in (confirmed, pending, unknown)]
    assert {(a.status_code, a.get_data()) for a in answers} == {(202, answers[0].get_data())}
    assert len(mails_to(system, confirmed, SIGN_IN_SUBJECT)) == 1
    assert mails_to(system, pending, SIGN_IN_SUBJECT) == [] and mails_to(system, unknown) == []


def test_a_sign_in_code_gives_the_token_pair_once(system, account):
    email = account["email"]
    assert ask_code(system, email).status_code == 202
    code = sign_in_code(system, email)
    pair = assert_pair(verify_code(system, f"  {email.upper()} ", code))
    assert me(system, pair["access_token"]).json["email"] == email
    again = verify_code(system, email, code)
    # Used: no live code, answered as a wrong code (an address without one answers alike).
    assert (again.status_code, again.json["error"], again.json["attempts_left"]) == (400, "invalid_code", 4)


def test_a_sign_in_code_for_an_unknown_or_pending_address_is_answered_as_a_wrong_one(system, unique_email):
    pending = unique_email()
    assert system.client.post("/auth/register", json={"email": pending, "password": PASSWORD}).status_code == 201
    for email in (unique_email(), pending):
        answer = verify_code(system, email, "123456")
        assert (answer.status_code, answer.json["error"], answer.json["attempts_left"]) == (400, "invalid_code", 4)
    [registration_code] = system.codes_for(pending)
    assert verify_code(system, pending, registration_code).json["error"] == "invalid_code"
    confirmed = system.client.post("/auth/confirm", json={"email": pending, "code": registration_code})
    assert confirmed.status_code == 200  # the registration code was not spent by sign-in


def test_asking_for_codes_has_the_cooldown_of_every_code(system, account):
    assert ask_code(system, account["email"]).status_code == 202
    again = ask_code(system, account["email"])
    assert (again.status_code, again.json["error"]) == (429, "rate_limited")
    assert "Retry-After" in again.headers


def test_with_the_second_factor_on_the_mailbox_alone_never_opens_the_account(system, mfa_account):
    email = mfa_account["email"]
    mailed = len(mails_to(system, email, SIGN_IN_SUBJECT))
    answer = ask_code(system, email)
    assert (answer.status_code, answer.json) == (202, ask_code(system, "nobody-" + email).json)
    assert len(mails_to(system, email, SIGN_IN_SUBJECT)) == mailed  # no code without a password
    # The challenge's code, the one sign-in code such an account gets, works with its challenge only.
    next_code_allowed(system)
    challenged(system, email)
    answer = verify_code(system, email, sign_in_code(system, email))
    assert (answer.status_code, answer.json["error"]) == (410, "code_expired")
    assert "access_token" not in answer.json


# --- a code is accepted for its purpose only ---


def test_sign_in_and_reset_codes_refuse_each_other(system, account):
    email = account["email"]
    assert ask_code(system, email).status_code == 202
    assert forgot(system, email).status_code == 202
    sign_in = sign_in_code(system, email)
    reset_code = code_in(mails_to(system, email, "Reset")[-1])
    assert reset(system, email, sign_in).json["error"] == "invalid_code"
    assert verify_code(system, email, reset_code).json["error"] == "invalid_code"
    assert reset(system, email, reset_code).status_code == 200
    assert_pair(verify_code(system, email, sign_in))


def test_sign_in_and_address_change_codes_refuse_each_other(system, account, unique_email):
    email, new_email = account["email"], unique_email()
    assert change_email(system, account["access_token"], new_email).status_code == 202
    change_code = code_in(mails_to(system, new_email, "new email")[-1])
    assert ask_code(system, email).status_code == 202
    sign_in = sign_in_code(system, email)
    assert confirm_email(system, account["access_token"], sign_in).json["error"] == "invalid_code"
    assert verify_code(system, email, change_code).json["error"] == "invalid_code"
    assert verify_code(system, new_email, change_code).json["error"] == "invalid_code"  # no sign-in code there
    assert confirm_email(system, account["access_token"], change_code).status_code == 200


def test_a_sign_in_code_is_refused_by_confirm(system, unique_email):
    email = unique_email()
    assert system.client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    [registration_code] = system.codes_for(email)
    # A pending account gets no sign-in code; a sign-in code submitted as a registration's is judged as one.
    verdict = system.auth.codes.judge(Purpose.SIGN_IN, email, code=registration_code)
    assert verdict is not None and verdict.verdict == "invalid_code"  # no sign-in code: as a wrong one
    assert system.client.post("/auth/confirm", json={"email": email, "code": registration_code}).status_code == 200
    assert ask_code(system, email).status_code == 202
    sign_in = sign_in_code(system, email)
    refused = system.client.post("/auth/confirm", json={"email": email, "code": sign_in})
    assert (refused.status_code, refused.json["error"]) == (410, "code_expired")
    assert_pair(verify_code(system, email, sign_in))


def test_a_verified_sign_in_code_leaves_auths_consumer_nothing_to_apply(system, account):
    assert ask_code(system, account["email"]).status_code == 202
    assert_pair(verify_code(system, account["email"], sign_in_code(system, account["email"])))
    [verified] = [
        d
        for d in system.broker.deliveries
        if d.queue == system.auth_settings.account_confirmed_queue and d.message.body.get("purpose") == "sign_in"
    ]
    assert verified.result == Result.ack()


# --- no secret in a log ---


def test_no_code_challenge_or_token_reaches_a_log(system, mfa_account, caplog):
    caplog.set_level(logging.DEBUG)
    email = mfa_account["email"]
    challenge = challenged(system, email)
    code = sign_in_code(system, email)
    pair = assert_pair(verify_challenge(system, challenge, code))
    set_mfa(system, pair["access_token"], False)
    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    for secret in (challenge, code, pair["access_token"], pair["refresh_token"], PASSWORD):
        assert secret not in text


# --- the device ---


def test_a_device_is_its_id_else_its_user_agent_and_network():
    assert device_identity("  abc ", "UA", "198.51.100.7") == device_identity("abc", "other", "203.0.113.1")
    assert device_identity(None, "UA", "198.51.100.7") == device_identity("", "UA", "198.51.100.200")
    assert device_identity(None, "UA", "198.51.100.7") != device_identity(None, "UA", "198.51.101.7")
    assert device_identity(None, "UA", "198.51.100.7") != device_identity(None, "UA2", "198.51.100.7")
    assert device_identity(None, "UA", "2001:db8:1:2::1") == device_identity(None, "UA", "2001:db8:1:2:ffff::9")
    assert device_identity(None, "UA", "2001:db8:1:2::1") != device_identity(None, "UA", "2001:db8:1:3::1")
    assert device_identity(None, "UA", "::ffff:198.51.100.7") == device_identity(None, "UA", "198.51.100.9")
    assert device_identity(None, None, "not an address") == device_identity(None, None, None)
    assert len(device_key(device_identity(None, "UA", "198.51.100.7"))) == 64


# --- rate limits ---


def test_asking_for_sign_in_codes_is_limited_per_ip_and_per_address(make_system, unique_email):
    env = {**limited(login_code_per_ip="3/hour", login_code_per_address="2/hour"), "RESEND_COOLDOWN_SECONDS": "0"}
    client = make_system(env).client
    email = unique_email()

    def ask(address, ip):
        return client.post("/auth/login/code", json={"email": address}, environ_base=from_ip(ip))

    assert ask(email, "198.51.100.1").status_code == 202
    assert ask(email, "198.51.100.2").status_code == 202
    assert_rate_limited(ask(email.upper(), "198.51.100.3"))
    assert ask(unique_email(), "198.51.100.1").status_code == 202
    assert ask(unique_email(), "198.51.100.1").status_code == 202
    assert_rate_limited(ask(unique_email(), "198.51.100.1"))


def test_sign_in_code_guesses_are_limited_per_ip_and_per_address_and_ip(make_system, unique_email):
    client = make_system(limited(login_code_verify_per_ip="3/hour", login_code_verify_per_address="2/hour")).client
    email = unique_email()

    def guess(address, ip):
        body = {"email": address, "code": "123456"}
        return client.post("/auth/login/code/verify", json=body, environ_base=from_ip(ip))

    assert guess(email, "198.51.100.1").status_code == 400
    assert guess(f" {email.upper()}", "198.51.100.1").status_code == 400
    assert_rate_limited(guess(email, "198.51.100.1"))  # the address from that IP: 2 an hour
    assert guess(email, "198.51.100.2").status_code == 400  # from another IP: its own count
    assert guess(unique_email(), "198.51.100.3").status_code == 400
    assert guess(unique_email(), "198.51.100.3").status_code == 400
    assert guess(unique_email(), "198.51.100.3").status_code == 400
    assert_rate_limited(guess(unique_email(), "198.51.100.3"))  # the IP: 3 an hour


def test_challenge_guesses_are_limited_per_ip_and_per_account(make_system, unique_email):
    system = make_system(limited(login_verify_per_ip="4/hour", login_verify_per_account="2/hour"))
    email = unique_email()
    sign_up(system, email)
    set_mfa(system, login(system, email)["access_token"], True)
    challenge = challenged(system, email)

    def guess(ip, challenge=challenge):
        body = {"challenge": challenge, "code": "000000"}
        return system.client.post("/auth/login/verify", json=body, headers=PHONE, environ_base=from_ip(ip))

    assert guess("198.51.100.1").status_code in (400, 410)
    assert guess("198.51.100.2").status_code in (400, 410)
    assert_rate_limited(guess("198.51.100.3"))
    # Unknown challenges name no account: the per-IP limit holds them.
    assert guess("198.51.100.4", challenge="unknown").status_code == 410
    assert guess("198.51.100.4", challenge="unknown-2").status_code == 410
    assert guess("198.51.100.4", challenge="unknown-3").status_code == 410
    assert guess("198.51.100.4", challenge="unknown-4").status_code == 410
    assert_rate_limited(guess("198.51.100.4", challenge="unknown-5"))


def test_wrong_passwords_at_the_switch_spend_the_password_change_budget(make_system, unique_email):
    system = make_system(limited(password_change_failures_per_account="2/hour"))
    email = unique_email()
    sign_up(system, email)
    token = login(system, email)["access_token"]
    for _ in range(2):
        assert set_mfa(system, token, True, password="not the password at all").status_code == 401
    assert_rate_limited(set_mfa(system, token, True))
