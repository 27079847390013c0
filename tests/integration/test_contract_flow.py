"""The contract end to end: real auth and worker processes, real RabbitMQ and Redis, real SMTP."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlparse

import pytest
import redis

from common.messaging.messages import Purpose
from devtools.stack import http_form, http_json
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.domain.codes import Slot
from tests.waiting import eventually

PASSWORD = "correct horse battery"


LINK = re.compile(r"http://\S+/auth/verify\?token=\S+")


def new_email() -> str:
    return f"it-{uuid.uuid4().hex[:12]}@example.com"


def register(stack, email, password=PASSWORD):
    return stack.call("POST", "/auth/register", {"email": email, "password": password, "name": "Ada"})


def emailed_codes(stack, email, count=1):
    mails = stack.sink.wait_for(email, count=count, timeout=15)
    assert len(mails) >= count, f"expected {count} mails to {email}, got {len(mails)}"
    return [mail.code for mail in mails]


def wait_until_expired(stack, email: str, *purposes: Purpose) -> None:
    """Until Redis's own time to live has ended the address's codes, as the worker's store sees them."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    store = RedisPendingCodes(client, stack.env["REDIS_KEY_PREFIX"])

    def expired() -> bool:
        return all(store.get(Slot(purpose, email)) is None for purpose in purposes)

    try:
        eventually(expired, f"the {', '.join(purposes)} codes expired")
    finally:
        client.close()


def confirm(stack, email, code):
    return stack.call("POST", "/auth/confirm", {"email": email, "code": code})


def login(stack, email, password=PASSWORD):
    return stack.call("POST", "/auth/login", {"email": email, "password": password})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_register_email_confirm_login_me(stack):
    email = new_email()
    status, _, body = register(stack, f"  {email.upper()}  ")
    assert (status, body["email"], body["status"]) == (201, email, "pending_verification")

    [mail] = stack.sink.wait_for(email, timeout=15)
    assert mail.code is not None
    assert "10 minutes" in mail.text
    assert mail.code in mail.html

    assert login(stack, email)[0] == 403
    status, headers, body = confirm(stack, email, mail.code)
    assert (status, body["status"]) == (200, "verified")

    status, headers, token = login(stack, email)
    assert status == 200 and token["token_type"] == "Bearer" and token["expires_in"] == 900
    assert headers["Cache-Control"] == "no-store"
    status, _, me = stack.call("GET", "/auth/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert status == 200
    assert (me["email"], me["name"], me["status"]) == (email, "Ada", "verified")


def confirmed_address(stack) -> str:
    email = new_email()
    assert register(stack, email)[0] == 201
    [code] = emailed_codes(stack, email)
    assert confirm(stack, email, code)[0] == 200
    return email


def test_registering_a_confirmed_address_is_409_whatever_the_case(stack):
    email = confirmed_address(stack)
    status, _, body = register(stack, email.upper())
    assert (status, body["error"]) == (409, "email_taken")


def test_parallel_registrations_of_a_confirmed_address_are_all_409_and_mail_nothing(stack):
    email = confirmed_address(stack)
    with ThreadPoolExecutor(10) as pool:
        statuses = sorted(pool.map(lambda _: register(stack, email)[0], range(10)))
    assert statuses == [409] * 10
    # The sentinel: a reset code asked for after the refusals; a code they had asked for would be queued before it.
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    expected = ["Confirm your email address", "Reset your password", "Welcome: your address is confirmed"]
    eventually(lambda: set(expected) <= set(subjects_to(stack, email)), "the welcome and the reset code's mail")
    # The verification code, the welcome of its confirmation and the sentinel: no refused registration mailed.
    assert sorted(subjects_to(stack, email)) == expected


def subjects_to(stack, email) -> list[str]:
    return [mail.subject for mail in stack.sink.mails_to(email)]


def test_wrong_codes_count_down_then_burn_the_code(stack):
    email = new_email()
    register(stack, email)
    [code] = emailed_codes(stack, email)
    for left in (4, 3, 2, 1):
        status, _, body = confirm(stack, email, wrong(code))
        assert (status, body["error"], body["attempts_left"]) == (400, "invalid_code", left)
    assert confirm(stack, email, wrong(code))[2]["error"] == "too_many_attempts"
    status, _, body = confirm(stack, email, code)
    assert (status, body["error"]) == (429, "too_many_attempts")


def test_twenty_parallel_wrong_guesses_never_exceed_the_attempt_limit(stack):
    email = new_email()
    register(stack, email)
    [code] = emailed_codes(stack, email)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: confirm(stack, email, wrong(code)), range(20)))
    errors = sorted(body["error"] for _, _, body in answers)
    assert errors.count("invalid_code") == 4
    assert errors.count("too_many_attempts") == 16
    assert confirm(stack, email, code)[0] == 429


def test_resend_replaces_the_code_and_respects_the_cooldown(start_stack):
    stack = start_stack(RESEND_COOLDOWN_SECONDS="2")
    email = new_email()
    register(stack, email)
    [first] = emailed_codes(stack, email)

    status, headers, body = stack.call("POST", "/auth/resend-code", {"email": email})
    assert (status, body["error"]) == (429, "rate_limited")
    assert 1 <= int(headers["Retry-After"]) <= 2

    # Asked again until the cooldown is over: each refusal in it is a 429 that starts nothing.
    eventually(
        lambda: stack.call("POST", "/auth/resend-code", {"email": email})[0] == 202,
        "a resend accepted once the cooldown ran out",
        every=0.2,
    )
    first_again, second = emailed_codes(stack, email, count=2)
    assert first_again == first
    if second != first:
        assert confirm(stack, email, first)[2]["error"] == "invalid_code"
    assert confirm(stack, email, second)[0] == 200


def test_resend_for_an_unknown_address_is_202_and_sends_nothing(stack):
    email = new_email()
    assert stack.call("POST", "/auth/resend-code", {"email": email})[0] == 202
    # The sentinel: a registration after it; a code the resend had asked for would be queued before its code.
    assert register(stack, email)[0] == 201
    [mail] = stack.sink.wait_for(email, count=1, timeout=15)
    assert subjects_to(stack, email) == ["Confirm your email address"]
    assert confirm(stack, email, mail.code)[0] == 200  # the registration's code: the one mail is the sentinel


def test_login_answers_alike_for_unknown_address_and_wrong_password(stack):
    email = confirmed_address(stack)
    unknown = login(stack, new_email())
    wrong_password = login(stack, email, "not the password")
    assert unknown[0] == wrong_password[0] == 401
    assert unknown[2] == wrong_password[2]


@pytest.mark.parametrize("header", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}])
def test_me_without_a_valid_token_is_401(stack, header):
    status, _, body = stack.call("GET", "/auth/me", headers=header)
    assert (status, body["error"]) == (401, "invalid_token")


def test_bad_input_gets_4xx_with_the_error_body(stack):
    url = f"{stack.base_url}/auth/register"
    status, _, body = http_json("POST", url, None, {"Content-Type": "application/json"})
    assert (status, body["error"]) == (400, "bad_request")
    status, _, body = stack.call("POST", "/auth/register", {"email": "x", "password": "short", "extra": 1})
    assert (status, body["error"]) == (422, "validation_error")
    assert set(body["fields"]) == {"email", "password", "extra"}


def test_health_readiness_and_openapi(stack):
    assert stack.call("GET", "/healthz")[0] == 200
    status, _, ready = stack.call("GET", "/readyz")
    assert status == 200 and ready["checks"] == {"mongodb": "up", "rabbitmq": "up"}
    status, _, document = stack.call("GET", "/openapi.json")
    assert status == 200 and "/auth/confirm" in document["paths"]


def test_an_expired_code_is_refused_for_every_purpose_and_its_link_expires_with_it(start_stack):
    stack = start_stack(CODE_TTL_SECONDS="1")
    email = new_email()
    register(stack, email)
    [verification] = stack.sink.wait_for(email, count=1, timeout=15)
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    reset_code = emailed_codes(stack, email, count=2)[1]
    wait_until_expired(stack, email, Purpose.VERIFY_EMAIL, Purpose.RESET_PASSWORD)
    status, _, body = confirm(stack, email, verification.code)
    assert (status, body["error"]) == (410, "code_expired")
    reset = {"email": email, "code": reset_code, "new_password": "a brand new passphrase 7"}
    status, _, body = stack.call("POST", "/auth/password/reset", reset)
    # A reset code is asked for by address alone: no live code answers as a wrong one, so the step tells
    # nothing about the address (docs/security.md, "The second step answers alike").
    assert (status, body["error"], body["attempts_left"]) == (400, "invalid_code", 4)
    token = parse_qs(urlparse(LINK.search(verification.text).group(0)).query)["token"][0]
    status, _, page = http_form(f"{stack.base_url}/auth/verify", {"token": token})
    assert status == 410 and "expired" in page


def test_no_verdict_in_time_is_202_and_the_account_ends_verified(start_stack):
    stack = start_stack(CONFIRM_WAIT_SECONDS="1")
    email = new_email()
    register(stack, email)
    [code] = emailed_codes(stack, email)
    assert stack.worker.stop() == 0

    status, _, body = confirm(stack, email, code)
    assert (status, body["status"]) == (202, "pending_verification")
    assert login(stack, email)[0] == 403

    stack.worker.start()
    eventually(lambda: login(stack, email)[0] == 200, "the account verified by the late verdict", 20, every=0.2)

    # The app retrying learns the outcome with the code it sent; any other code learns nothing: a confirm must not
    # tell a guesser the account's state.
    status, _, body = confirm(stack, email, code)
    assert (status, body["status"]) == (200, "verified")
    status, _, body = confirm(stack, email, wrong(code))
    assert (status, body["error"]) == (410, "code_expired")


def test_without_a_code_key_the_workers_share_one_through_redis(start_stack):
    stack = start_stack(CODE_HMAC_KEY="")  # empty: unset, as with only the contract's settings
    email = new_email()
    register(stack, email)
    [code] = emailed_codes(stack, email)
    assert confirm(stack, email, code)[0] == 200
    assert login(stack, email)[0] == 200
