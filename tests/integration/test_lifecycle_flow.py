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

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase 7"
LINK = re.compile(r"http://\S+/auth/verify\?token=\S+")
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
    deadline = time.monotonic() + 20
    while stack.call("POST", "/auth/login", {"email": email, "password": NEW_PASSWORD})[0] != 200:
        assert time.monotonic() < deadline, "the reset was never applied"
        time.sleep(0.2)
    assert stack.call("GET", "/auth/me", headers=bearer(pair))[0] == 401
