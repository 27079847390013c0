"""Auth's one client for codes, on the whole system wired on fakes: purposes kept apart end to end."""

from __future__ import annotations

import pytest

from auth_service.domain.errors import (
    AuthError,
    CodeExpired,
    InvalidCode,
    RateLimited,
    ServiceUnavailable,
    TooManyAttempts,
)
from auth_service.service_layer.codes import error_for
from common.messaging.messages import CodeVerdict, Purpose, Verdict

PASSWORD = "correct horse battery"


def register(system, email):
    response = system.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201
    return response.json["id"]


def confirm(system, email, code):
    return system.client.post("/auth/confirm", json={"email": email, "code": code})


def test_a_reset_code_neither_voids_a_pending_registration_nor_confirms_it(system, unique_email):
    email = unique_email()
    user_id = register(system, email)
    codes = system.auth.codes
    codes.issue(user_id, codes.request(Purpose.RESET_PASSWORD, user_id, email))
    registration_code, reset_code = system.codes_for(email)
    assert [mail.subject for mail in system.outbox] == ["Confirm your email address", "Reset your password"]

    refused = confirm(system, email, reset_code)
    assert (refused.status_code, refused.json["error"], refused.json["attempts_left"]) == (400, "invalid_code", 4)
    assert confirm(system, email, registration_code).status_code == 200


def test_a_registration_code_is_refused_for_a_reset_and_the_reset_code_is_not(system, unique_email):
    email = unique_email()
    user_id = register(system, email)
    codes = system.auth.codes
    codes.issue(user_id, codes.request(Purpose.RESET_PASSWORD, user_id, email))
    registration_code, reset_code = system.codes_for(email)

    refused = system.auth.codes.judge(Purpose.RESET_PASSWORD, email, code=registration_code)
    assert refused.verdict is Verdict.INVALID_CODE and refused.user_id is None
    accepted = system.auth.codes.judge(Purpose.RESET_PASSWORD, email, code=reset_code)
    assert (accepted.verdict, accepted.purpose, accepted.user_id, accepted.email) == (
        Verdict.VERIFIED,
        Purpose.RESET_PASSWORD,
        user_id,
        email,
    )
    # A verified reset code confirms nobody's registration: its durable message names its purpose,
    # and with no reset stored under its submission there is nothing for auth to apply.
    [verified] = system.broker.sent_to(system.auth_settings.account_confirmed_queue)
    assert verified.body["purpose"] == "reset_password"
    assert system.auth.users.by_id(user_id).verified is False


def test_the_cooldown_is_per_purpose(system, unique_email):
    email = unique_email()
    register(system, email)  # starts the registration's cooldown
    with pytest.raises(RateLimited):
        system.auth.codes.throttle(Purpose.VERIFY_EMAIL, email)
    system.auth.codes.throttle(Purpose.RESET_PASSWORD, email)
    with pytest.raises(RateLimited) as refused:
        system.auth.codes.throttle(Purpose.RESET_PASSWORD, email)
    assert refused.value.details["retry_after"] == system.auth_settings.resend_cooldown_seconds


def test_the_broker_away_is_a_503_before_any_cooldown_starts(system, unique_email):
    email = unique_email()
    system.broker.up = False
    with pytest.raises(ServiceUnavailable):
        system.auth.codes.throttle(Purpose.RESET_PASSWORD, email)
    with pytest.raises(ServiceUnavailable):
        system.auth.codes.judge(Purpose.RESET_PASSWORD, email, code="123456")
    system.broker.up = True
    system.auth.codes.throttle(Purpose.RESET_PASSWORD, email)


def test_support_is_not_held_by_the_cooldown_but_starts_it_and_waits_for_the_broker(system, unique_email):
    email = unique_email()
    register(system, email)  # starts the registration's cooldown
    system.auth.codes.throttle(Purpose.VERIFY_EMAIL, email, by_support=True)
    system.auth.codes.throttle(Purpose.RESET_PASSWORD, email, by_support=True)
    with pytest.raises(RateLimited):  # support's ask started the reset's cooldown for the owner
        system.auth.codes.throttle(Purpose.RESET_PASSWORD, email)
    system.broker.up = False
    with pytest.raises(ServiceUnavailable):
        system.auth.codes.throttle(Purpose.VERIFY_EMAIL, email, by_support=True)


def test_no_verdict_in_time_is_none_and_an_unreadable_one_is_a_503(system, unique_email):
    email = unique_email()
    system.broker.hold.add(system.worker_settings.confirm_email_code_queue)
    assert system.auth.codes.judge(Purpose.VERIFY_EMAIL, email, code="123456") is None
    system.broker.hold.clear()
    system.broker.request = lambda queue, message, timeout: {"verdict": "maybe"}
    with pytest.raises(ServiceUnavailable):
        system.auth.codes.judge(Purpose.VERIFY_EMAIL, email, code="123456")


@pytest.mark.parametrize(
    ("verdict", "error", "details"),
    [
        (CodeVerdict(Verdict.INVALID_CODE, attempts_left=3), InvalidCode, {"attempts_left": 3}),
        (CodeVerdict(Verdict.CODE_EXPIRED), CodeExpired, {}),
        (CodeVerdict(Verdict.TOO_MANY_ATTEMPTS), TooManyAttempts, {}),
    ],
)
def test_every_verdict_but_verified_maps_to_the_contracts_error(verdict, error, details):
    mapped = error_for(verdict)
    assert type(mapped) is error and mapped.details == details


def test_every_verdict_but_verified_has_an_error():
    for verdict in set(Verdict) - {Verdict.VERIFIED}:
        assert isinstance(error_for(CodeVerdict(verdict)), AuthError)
