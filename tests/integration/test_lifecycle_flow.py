"""Password reset, address change and confirmation by link, end to end on the real processes.

Real auth (waitress) and worker processes, this machine's RabbitMQ and Redis,
the mail sink: each flow as a user walks it, reading the codes and links from
the emails that arrive.
"""

from __future__ import annotations

import re
import time
import uuid

from devtools.stack import http_form, http_json
from tests.integration.test_contract_flow import LINK, wrong
from tests.waiting import eventually

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase 7"
FORM = re.compile(r'<form method="post" action="([^"]+)">\s*<input type="hidden" name="token" value="([^"]+)">')


def new_email() -> str:
    return f"it-{uuid.uuid4().hex[:12]}@example.com"


def mail(stack, email, subject_part, count=1):
    deadline = time.monotonic() + 20
    while True:
        found = [m for m in stack.sink.mails_to(email) if subject_part in m.subject]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, (
                f"no mail '{subject_part}' to {email}: {[m.subject for m in stack.sink.mails_to(email)]}"
            )
            return found[count - 1]
        stack.sink.wait_for(email, count=len(stack.sink.mails_to(email)) + 1, timeout=1)


def sign_up(stack, email) -> dict:
    assert stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    code = mail(stack, email, "Confirm your email").code
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": code})[0] == 200
    return login(stack, email)


def login(stack, email, password=PASSWORD) -> dict:
    status, _, body = stack.call("POST", "/auth/login", {"email": email, "password": password})
    assert status == 200, body
    return body


def bearer(pair) -> dict:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def test_forgot_then_reset_ends_every_session_and_sets_the_password(stack):
    email = new_email()
    pair = sign_up(stack, email)
    unknown = stack.call("POST", "/auth/password/forgot", {"email": new_email()})
    known = stack.call("POST", "/auth/password/forgot", {"email": email})
    assert (unknown[0], unknown[2]) == (known[0], known[2]) == (202, known[2])

    code = mail(stack, email, "Reset").code
    status, headers, body = stack.call(
        "POST", "/auth/password/reset", {"email": email, "code": code, "new_password": NEW_PASSWORD}
    )
    assert (status, body) == (200, {"status": "password_reset"})
    assert headers["Cache-Control"] == "no-store"
    assert stack.call("GET", "/auth/me", headers=bearer(pair))[0] == 401
    assert stack.call("POST", "/auth/token/refresh", {"refresh_token": pair["refresh_token"]})[0] == 401
    assert stack.call("POST", "/auth/login", {"email": email, "password": PASSWORD})[0] == 401
    fresh = login(stack, email, NEW_PASSWORD)
    assert stack.call("GET", "/auth/me", headers=bearer(fresh))[0] == 200


def test_an_address_change_sends_a_code_and_both_notices_and_moves_the_login(stack):
    old, new = new_email(), new_email()
    pair = sign_up(stack, old)
    status, _, body = stack.call(
        "POST", "/auth/email/change", {"new_email": new, "password": PASSWORD}, headers=bearer(pair)
    )
    assert status == 202, body
    asked = mail(stack, old, "asked for")
    assert new in asked.text and asked.code is None
    code = mail(stack, new, "new email").code

    status, _, profile = stack.call("POST", "/auth/email/confirm", {"code": code}, headers=bearer(pair))
    assert (status, profile["email"]) == (200, new)
    done = mail(stack, old, "was changed")
    assert new in done.text and done.code is None
    assert stack.call("POST", "/auth/login", {"email": old, "password": PASSWORD})[0] == 401
    assert login(stack, new)


def test_verify_by_link_the_page_confirms_nothing_and_its_button_confirms_once(stack):
    email = new_email()
    assert stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    verification = mail(stack, email, "Confirm your email")
    [link] = LINK.findall(verification.text)
    assert link.startswith(stack.base_url) and email not in link and verification.code not in link

    for _ in range(2):  # a mail scanner, then the user
        status, headers, page = http_json("GET", link)
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        assert (
            headers["Referrer-Policy"] == "no-referrer" and "form-action 'self'" in headers["Content-Security-Policy"]
        )
    assert stack.call("POST", "/auth/login", {"email": email, "password": PASSWORD})[0] == 403
    action, token = FORM.search(page).groups()

    status, headers, confirmed = http_form(f"{stack.base_url}{action}", {"token": token})
    assert status == 200 and "Address confirmed" in confirmed
    assert headers["Cache-Control"] == "no-store"
    assert login(stack, email)
    status, _, used = http_form(f"{stack.base_url}{action}", {"token": token})
    assert status == 410 and "expired" in used
    assert http_json("GET", f"{stack.base_url}/auth/verify?token=nope")[0] == 400


def test_a_reset_whose_request_timed_out_is_applied_when_the_worker_judges_it(start_stack):
    stack = start_stack(CONFIRM_WAIT_SECONDS="1")
    email = new_email()
    pair = sign_up(stack, email)
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    code = mail(stack, email, "Reset").code
    assert stack.worker.stop() == 0

    status, _, body = stack.call(
        "POST", "/auth/password/reset", {"email": email, "code": code, "new_password": NEW_PASSWORD}
    )
    assert (status, body) == (202, {"status": "pending"})
    assert login(stack, email)  # nothing applied while the worker is away

    stack.worker.start()
    eventually(
        lambda: stack.call("POST", "/auth/login", {"email": email, "password": NEW_PASSWORD})[0] == 200,
        "the reset applied by the late verdict",
        20,
        every=0.2,
    )
    assert stack.call("GET", "/auth/me", headers=bearer(pair))[0] == 401


def reset(stack, email, code, new_password=NEW_PASSWORD):
    return stack.call("POST", "/auth/password/reset", {"email": email, "code": code, "new_password": new_password})


def test_a_reset_refuses_a_registration_code_checks_the_password_and_proves_a_pending_address(stack):
    email = new_email()
    assert stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    registration_code = mail(stack, email, "Confirm your email").code
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    reset_code = mail(stack, email, "Reset").code

    status, _, body = reset(stack, email, registration_code)  # a code of another purpose
    assert (status, body["error"], body["attempts_left"]) == (400, "invalid_code", 4)
    status, _, body = reset(stack, email, reset_code, new_password="short")
    assert (status, body["error"]) == (422, "validation_error") and "new_password" in body["fields"]
    # An unknown address: answered as a known one without a live code, a wrong code counting down.
    assert reset(stack, new_email(), reset_code)[2]["error"] == "invalid_code"

    status, _, body = reset(stack, email, reset_code)
    assert (status, body) == (200, {"status": "password_reset"})
    pair = login(stack, email, NEW_PASSWORD)  # the reset proved the address: no 403
    assert stack.call("GET", "/auth/me", headers=bearer(pair))[2]["status"] == "verified"
    status, _, body = stack.call("POST", "/auth/confirm", {"email": email, "code": registration_code})
    assert (status, body["error"]) == (410, "code_expired")
    status, _, body = reset(stack, email, reset_code)  # a code works once: then none is live, as a wrong one
    assert (status, body["error"]) == (400, "invalid_code")


def test_wrong_reset_codes_count_down_then_burn_the_code(stack):
    email = new_email()
    sign_up(stack, email)
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    code = mail(stack, email, "Reset").code
    for left in (4, 3, 2, 1):
        status, _, body = reset(stack, email, wrong(code))
        assert (status, body["error"], body["attempts_left"]) == (400, "invalid_code", left)
    assert reset(stack, email, wrong(code))[2]["error"] == "too_many_attempts"
    status, _, body = reset(stack, email, code)
    assert (status, body["error"]) == (429, "too_many_attempts")
    assert login(stack, email)  # the old password stands


def test_forgot_has_a_cooldown_for_unknown_addresses_too_and_mails_them_nothing(stack):
    known, unknown = new_email(), new_email()
    sign_up(stack, known)
    for email in (known, unknown):
        assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
        status, headers, body = stack.call("POST", "/auth/password/forgot", {"email": email})
        assert (status, body["error"]) == (429, "rate_limited") and int(headers["Retry-After"]) >= 1
    status, _, body = stack.call("POST", "/auth/password/forgot", {"email": "not an address"})
    assert (status, body["error"]) == (422, "validation_error")
    assert mail(stack, known, "Reset")
    assert stack.sink.mails_to(unknown) == []


def test_an_address_change_answers_its_errors_and_email_confirm_the_code_errors(stack):
    email, taken = new_email(), new_email()
    pair = sign_up(stack, email)
    sign_up(stack, taken)
    change = "/auth/email/change"
    status, _, body = stack.call("POST", change, {"new_email": new_email(), "password": "not it"}, bearer(pair))
    assert (status, body["error"]) == (401, "invalid_credentials")
    status, _, body = stack.call("POST", change, {"new_email": new_email(), "password": PASSWORD})
    assert (status, body["error"]) == (401, "invalid_token")
    status, _, body = stack.call("POST", change, {"new_email": taken.upper(), "password": PASSWORD}, bearer(pair))
    assert (status, body["error"]) == (409, "email_taken")
    status, _, body = stack.call("POST", change, {"new_email": "no-at-sign", "password": PASSWORD}, bearer(pair))
    assert (status, body["error"]) == (422, "validation_error")
    status, _, body = stack.call("POST", "/auth/email/confirm", {"code": "123456"}, bearer(pair))
    assert (status, body["error"]) == (410, "code_expired")  # no change asked for

    new = new_email()
    assert stack.call("POST", change, {"new_email": new, "password": PASSWORD}, bearer(pair))[0] == 202
    code = mail(stack, new, "new email").code
    status, _, body = stack.call("POST", "/auth/email/confirm", {"code": code})
    assert (status, body["error"]) == (401, "invalid_token")
    status, _, body = stack.call("POST", "/auth/email/confirm", {"code": wrong(code)}, bearer(pair))
    assert (status, body["error"], body["attempts_left"]) == (400, "invalid_code", 4)
    status, _, body = reset(stack, new, code)
    assert (status, body["error"]) == (400, "invalid_code")  # no account has the new address yet: as wrong
    status, _, profile = stack.call("POST", "/auth/email/confirm", {"code": code}, bearer(pair))
    assert (status, profile["email"]) == (200, new)


def test_a_case_only_address_change_is_allowed(stack):
    email = new_email()
    pair = sign_up(stack, email)
    status, _, body = stack.call(
        "POST", "/auth/email/change", {"new_email": email.upper(), "password": PASSWORD}, headers=bearer(pair)
    )
    assert status == 202, body
    code = mail(stack, email, "new email").code
    status, _, profile = stack.call("POST", "/auth/email/confirm", {"code": code}, headers=bearer(pair))
    assert (status, profile["email"]) == (200, email)
    assert login(stack, email.upper())


def test_the_link_spends_the_code_and_a_forged_token_gets_the_400_page(stack):
    email = new_email()
    assert stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    verification = mail(stack, email, "Confirm your email")
    [link] = LINK.findall(verification.text)
    action, token = FORM.search(http_json("GET", link)[2]).groups()
    status, _, page = http_form(f"{stack.base_url}{action}", {"token": "forged." + token[::-1]})
    assert status == 400 and "<html" in page.lower()
    assert http_form(f"{stack.base_url}{action}", {"token": token})[0] == 200
    status, _, body = stack.call("POST", "/auth/confirm", {"email": email, "code": verification.code})
    assert (status, body["error"]) == (410, "code_expired")
