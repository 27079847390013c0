"""Sign-in by emailed code, end to end on the real processes: the second factor, and sign-in without a password.

Real auth (waitress) and worker processes, this machine's RabbitMQ and Redis,
the mail sink; the codes are read from the emails that arrive.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from common.messaging.messages import Purpose
from devtools.stack import http_form, http_json
from tests.integration.test_account_events_flow import FORM, NOT_ME_LINK
from tests.integration.test_contract_flow import wait_until_expired
from tests.integration.test_lifecycle_flow import PASSWORD, bearer, login, mail, new_email, sign_up

PHONE = {"X-Device-Id": "it-phone"}
LAPTOP = {"X-Device-Id": "it-laptop"}
WRONG_PASSWORD = {"error": "invalid_credentials", "message": "Email or password is incorrect."}


def set_mfa(stack, pair, enabled, password=PASSWORD):
    return stack.call("POST", "/auth/mfa", {"enabled": enabled, "password": password}, headers=bearer(pair))


def password_login(stack, email, headers, password=PASSWORD):
    return stack.call("POST", "/auth/login", {"email": email, "password": password}, headers=headers)


def verify_challenge(stack, challenge, code, headers):
    return stack.call("POST", "/auth/login/verify", {"challenge": challenge, "code": code}, headers=headers)


def test_the_second_factor_end_to_end(start_module_stack):
    stack = start_module_stack()
    email, plain = new_email(), new_email()
    pair = sign_up(stack, email)
    sign_up(stack, plain)

    status, _, body = set_mfa(stack, pair, True, password="not the password at all")
    assert (status, body["error"]) == (401, "invalid_credentials")
    status, _, body = set_mfa(stack, pair, True)
    assert (status, body) == (200, {"mfa": "email"})
    turned_on = mail(stack, email, "turned on")
    assert turned_on.code is None and turned_on.html

    # A wrong password: the same answer as for an account without the second factor, and no code.
    with_factor = password_login(stack, email, PHONE, password="not the password at all")
    without = password_login(stack, plain, PHONE, password="not the password at all")
    assert (with_factor[0], with_factor[2]) == (without[0], without[2]) == (401, WRONG_PASSWORD)

    status, headers, body = password_login(stack, email, PHONE)
    assert status == 202 and set(body) == {"mfa_required", "challenge"} and body["mfa_required"] is True
    assert headers["Cache-Control"] == "no-store"
    challenge = body["challenge"]
    code = mail(stack, email, "sign-in code").code
    assert code is not None

    status, _, refused = verify_challenge(stack, challenge, code, LAPTOP)
    assert (status, refused["error"]) == (410, "code_expired")  # bound to the device of its login
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    status, _, refused = verify_challenge(stack, challenge, wrong, PHONE)
    assert (status, refused["error"], refused["attempts_left"]) == (400, "invalid_code", 4)
    status, _, tokens = verify_challenge(stack, challenge, code, PHONE)
    assert status == 200 and tokens["token_type"] == "Bearer", tokens
    assert stack.call("GET", "/auth/me", headers=bearer(tokens))[2]["email"] == email
    status, _, refused = verify_challenge(stack, challenge, code, PHONE)
    assert (status, refused["error"]) == (410, "code_expired")  # works once

    # The phone is trusted now; the laptop is not.
    assert password_login(stack, email, PHONE)[0] == 200
    status, _, body = set_mfa(stack, tokens, False)
    assert (status, body) == (200, {"mfa": "off"})
    turned_off = mail(stack, email, "turned off")
    assert turned_off.code is None
    assert password_login(stack, email, LAPTOP)[0] == 200

    # "This wasn't me" in the turned-off notice: every session ends, a reset code comes, and the factor
    # is on again, the phone it trusted asked afresh (a new code, or the cooldown's 429 before one).
    link = NOT_ME_LINK.search(turned_off.text)
    assert link is not None and link.group(0) in turned_off.html
    form = FORM.search(http_json("GET", link.group(0))[2])
    assert form is not None
    status, _, done = http_form(f"{stack.base_url}{form.group(1)}", {"token": form.group(2)})
    assert status == 200 and "signed out" in done
    assert stack.call("GET", "/auth/me", headers=bearer(tokens))[0] == 401
    reset_code = mail(stack, email, "Reset").code
    assert reset_code is not None
    assert password_login(stack, email, PHONE)[0] == 401  # the password works again only after a reset
    reset = {"email": email, "code": reset_code, "new_password": PASSWORD}
    assert stack.call("POST", "/auth/password/reset", reset)[0] == 200
    status, _, body = password_login(stack, email, PHONE)
    assert status in (202, 429) and "access_token" not in body, body


def test_parallel_verifies_of_one_challenge_on_waitress_give_exactly_one_pair(start_module_stack):
    stack = start_module_stack()
    email = new_email()
    assert set_mfa(stack, sign_up(stack, email), True)[0] == 200
    status, _, body = password_login(stack, email, PHONE)
    assert status == 202, body
    code = mail(stack, email, "sign-in code").code
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: verify_challenge(stack, body["challenge"], code, PHONE), range(6)))
    statuses = sorted(answer[0] for answer in answers)
    # The others meet the challenge or its code spent: 410, or refused as a code that is not live (400,
    # then 429 as its attempts run out). One pair only.
    assert statuses[0] == 200 and all(status in (400, 410, 429) for status in statuses[1:]), statuses
    assert sum("access_token" in answer[2] for answer in answers) == 1


def test_sign_in_without_a_password_end_to_end(start_module_stack):
    stack = start_module_stack()
    confirmed, pending, unknown = new_email(), new_email(), new_email()
    sign_up(stack, confirmed)
    assert stack.call("POST", "/auth/register", {"email": pending, "password": PASSWORD})[0] == 201
    mail(stack, pending, "Confirm your email")

    # The confirmed address last: once its code arrives, the relay has acted on the other two requests.
    answers = [stack.call("POST", "/auth/login/code", {"email": email}) for email in (pending, unknown, confirmed)]
    assert {(status, str(body)) for status, _, body in answers} == {(202, str(answers[0][2]))}
    code = mail(stack, confirmed, "sign-in code").code
    assert code is not None

    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    status, _, body = stack.call("POST", "/auth/login/code/verify", {"email": confirmed, "code": wrong})
    assert (status, body["error"], body["attempts_left"]) == (400, "invalid_code", 4)
    status, _, tokens = stack.call("POST", "/auth/login/code/verify", {"email": confirmed.upper(), "code": code})
    assert status == 200, tokens
    assert stack.call("GET", "/auth/me", headers=bearer(tokens))[2]["email"] == confirmed
    # Used, or never mailed (a pending or unknown address): no live code, answered as a wrong one.
    status, _, body = stack.call("POST", "/auth/login/code/verify", {"email": confirmed, "code": code})
    assert (status, body["error"]) == (400, "invalid_code")
    for email in (pending, unknown):
        status, _, body = stack.call("POST", "/auth/login/code/verify", {"email": email, "code": code})
        assert (status, body["error"], body["attempts_left"]) == (400, "invalid_code", 4)

    status, headers, body = stack.call("POST", "/auth/login/code", {"email": confirmed})
    assert (status, body["error"]) == (429, "rate_limited") and int(headers["Retry-After"]) >= 1

    assert len(stack.sink.mails_to(pending)) == 1  # its confirmation code only
    assert stack.sink.mails_to(unknown) == []
    assert login(stack, confirmed)["token_type"] == "Bearer"  # the password still works too


def test_without_trust_days_every_login_asks_for_the_code(start_stack):
    stack = start_stack(MFA_TRUST_DAYS="0", RESEND_COOLDOWN_SECONDS="0")
    email = new_email()
    assert set_mfa(stack, sign_up(stack, email), True)[0] == 200
    for count in (1, 2):
        status, _, body = password_login(stack, email, PHONE)
        assert status == 202, body
        code = mail(stack, email, "sign-in code", count=count).code
        assert verify_challenge(stack, body["challenge"], code, PHONE)[0] == 200


def test_a_challenge_expires_with_its_code(start_stack):
    stack = start_stack(CODE_TTL_SECONDS="3")
    email = new_email()
    assert set_mfa(stack, sign_up(stack, email), True)[0] == 200
    status, _, body = password_login(stack, email, PHONE)
    assert status == 202, body
    code = mail(stack, email, "sign-in code").code
    wait_until_expired(stack, email, Purpose.SIGN_IN)  # stored after the challenge: the challenge is past too
    status, _, refused = verify_challenge(stack, body["challenge"], code, PHONE)
    assert (status, refused["error"]) == (410, "code_expired")
