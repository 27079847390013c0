"""Hardening against a targeted lockout, silent sign-ins and guessing, on the real processes: the limits an
attacker shared with the owner, silent sign-ins, attacker-written text in notices, telling accounts apart by
the second step, the guessing bound per account, the second factor against a mailbox alone, trust that
outlived a password, notice floods.

Real auth (waitress) and worker processes, this machine's RabbitMQ and Redis, the mail sink. Each test
plays the attack the finding describes (docs/security.md, "Hardening against a targeted lockout, silent
sign-ins and guessing", under the finding's title) and checks what the owner is left with.
"""

from __future__ import annotations

import http.client
import json
import re

import pytest

from tests.integration.test_account_events_flow import NOT_ME_LINK
from tests.integration.test_accounts_hardening import code_requests_acked, wait_until_acked
from tests.integration.test_lifecycle_flow import NEW_PASSWORD, PASSWORD, bearer, mail, new_email, sign_up

pytestmark = pytest.mark.integration

PHONE = {"X-Device-Id": "owner-phone-install-7f3a"}
LAPTOP = {"X-Device-Id": "owner-laptop-install-91c2"}
CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
OWN_LINK = re.compile(r"http://127\.0\.0\.1:\d+/auth/not-me\?token=[\w.-]+")
URL_LIKE = re.compile(r"https?://|www\.|\b[a-z0-9-]+\.(?:com|net|org|example|io)\b", re.IGNORECASE)


def call(stack, method, path, body=None, headers=None, source="127.0.0.1"):
    """(status, headers, JSON body) over a connection from ``source``, a loopback address of our choice:
    127.0.0.2 is another client than 127.0.0.1 to every per-IP counter."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.auth_port, timeout=30, source_address=(source, 0))
    try:
        data = json.dumps(body) if body is not None else None
        sent = {**({"Content-Type": "application/json"} if data else {}), **(headers or {})}
        connection.request(method, path, data, sent)
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.headers, json.loads(raw) if raw else None
    finally:
        connection.close()


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def password_login(stack, email, headers=None, password=PASSWORD, source="127.0.0.1"):
    return call(stack, "POST", "/auth/login", {"email": email, "password": password}, headers, source)


# 6. Sign-in by emailed code was silent.


def test_a_sign_in_by_code_from_a_new_device_records_it_and_mails_the_new_sign_in_notice(stack):
    email = new_email()
    sign_up(stack, email)  # the first login: its device is the account's first
    assert call(stack, "POST", "/auth/login/code", {"email": email})[0] == 202
    code = mail(stack, email, "sign-in code").code
    status, _, tokens = call(
        stack, "POST", "/auth/login/code/verify", {"email": email, "code": code}, {"User-Agent": CHROME_ON_WINDOWS}
    )
    assert status == 200, tokens
    notice = mail(stack, email, "New sign-in")
    assert "Chrome 120, Windows 10" in notice.text and "127.0.0.1" in notice.text
    link = NOT_ME_LINK.search(notice.text)
    assert link is not None and link.group(0) in notice.html
    # The device is known from then on: a password login from it is no news.
    assert password_login(stack, email, {"User-Agent": CHROME_ON_WINDOWS})[0] == 200
    assert len([m for m in stack.sink.mails_to(email) if "New sign-in" in m.subject]) == 1


# 7. Attacker-written text in the "New sign-in" notice.


def test_the_new_sign_in_notice_names_the_device_by_a_label_never_by_what_the_client_wrote(stack):
    email = new_email()
    sign_up(stack, email)
    lure = f"{CHROME_ON_WINDOWS} URGENT: your account is hacked, call +1-555-0100 or visit http://help.evil.example/r"
    assert password_login(stack, email, {"User-Agent": lure})[0] == 200
    notice = mail(stack, email, "New sign-in")
    assert "Device: Chrome 120, Windows 10" in notice.text and "Chrome 120, Windows 10" in notice.html
    for part in (notice.text, notice.html):
        assert "URGENT" not in part and "555-0100" not in part and "evil" not in part
        # The only link a notice carries is its own "this wasn't me" link, to this service.
        assert URL_LIKE.search(OWN_LINK.sub("", part)) is None, part

    app_name = "evil.example.com/1.0 CFNetwork/1410.0.3 Darwin/22.6.0"  # a family ua-parser takes from the text
    assert password_login(stack, email, {"User-Agent": app_name})[0] == 200
    second = mail(stack, email, "New sign-in", count=2)
    assert "Device: iOS 16" in second.text and "evil" not in second.text and "evil" not in second.html


# 11. With the second factor on, a mailbox alone opened the account.


def test_with_the_second_factor_on_a_mailbox_alone_never_opens_the_account(start_stack):
    stack = start_stack(RESEND_COOLDOWN_SECONDS="0")
    email, plain = new_email(), new_email()
    pair = sign_up(stack, email)
    sign_up(stack, plain)
    assert call(stack, "POST", "/auth/mfa", {"enabled": True, "password": PASSWORD}, bearer(pair))[0] == 200
    # The owner's password login mails the challenge's code; a thief reading the mailbox takes it to the
    # sign-in without a password: refused, no tokens.
    status, _, body = password_login(stack, email, PHONE)
    assert status == 202 and body["mfa_required"] is True
    code = mail(stack, email, "sign-in code").code
    status, _, refused = call(stack, "POST", "/auth/login/code/verify", {"email": email, "code": code})
    assert status == 410 and "access_token" not in refused, refused
    # Without a password: answered like any address, and nothing is mailed. The account without the
    # factor asks last: once its code arrives, the relay has acted on the first request.
    answers = [call(stack, "POST", "/auth/login/code", {"email": address}) for address in (email, plain)]
    assert answers[0][0] == answers[1][0] == 202 and answers[0][2] == answers[1][2]
    mail(stack, plain, "sign-in code")
    signs_in = [m.subject for m in stack.sink.mails_to(email) if "sign-in code" in m.subject]
    assert len(signs_in) == 1, signs_in  # the challenge's only


# 12. Devices trusted by the second factor stayed trusted after a password change or reset.


def test_a_password_change_or_reset_forgets_every_device_the_second_factor_trusted(start_stack):
    stack = start_stack(RESEND_COOLDOWN_SECONDS="0")
    email = new_email()
    pair = sign_up(stack, email)
    assert call(stack, "POST", "/auth/mfa", {"enabled": True, "password": PASSWORD}, bearer(pair))[0] == 200

    def trust(device, password, count):
        status, _, body = password_login(stack, email, device, password)
        assert status == 202, body
        code = mail(stack, email, "sign-in code", count=count).code
        verified = call(stack, "POST", "/auth/login/verify", {"challenge": body["challenge"], "code": code}, device)
        assert verified[0] == 200, verified
        assert password_login(stack, email, device, password)[0] == 200  # trusted now
        return verified[2]

    tokens = trust(PHONE, PASSWORD, 1)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert call(stack, "POST", "/auth/password/change", change, bearer(tokens))[0] == 200
    status, _, body = password_login(stack, email, PHONE, NEW_PASSWORD)
    assert status == 202 and "access_token" not in body, body  # asked for the code again

    trust(LAPTOP, NEW_PASSWORD, 3)
    assert call(stack, "POST", "/auth/password/forgot", {"email": email})[0] == 202
    reset = {"email": email, "code": mail(stack, email, "Reset").code, "new_password": PASSWORD}
    assert call(stack, "POST", "/auth/password/reset", reset)[0] == 200
    status, _, body = password_login(stack, email, LAPTOP, PASSWORD)
    assert status == 202 and "access_token" not in body, body


# 13. An account holder could mail the owner's address without limit.


def test_a_session_cannot_flood_the_owners_mailbox_with_notices(start_stack):
    stack = start_stack(RATELIMIT_ENABLED="true")
    email = new_email()
    pair = sign_up(stack, email)
    statuses = []
    for round_ in range(6):
        toggle = {"enabled": round_ % 2 == 0, "password": PASSWORD}
        statuses.append(call(stack, "POST", "/auth/mfa", toggle, bearer(pair))[0])
        move = {"new_email": new_email(), "password": PASSWORD}
        statuses.append(call(stack, "POST", "/auth/email/change", move, bearer(pair))[0])
    # RATELIMIT_NOTICES_PER_ACCOUNT: 5 an hour by default, whichever action mails the notice.
    assert statuses == [200, 202, 200, 202, 200] + [429] * 7, statuses
    noticed = ("turned on", "turned off", "change of your account's email address")
    stack.sink.wait_for(email, count=2 + 5, timeout=20)  # the code and the welcome, then the notices
    mails = [m.subject for m in stack.sink.mails_to(email) if any(word in m.subject for word in noticed)]
    assert len(mails) == 5, mails


# 4. A targeted lockout for up to a day, from one IP with anonymous requests.


def test_a_targeted_lockout_leaves_the_owner_a_way_in(start_stack):
    # Every limit at its default, the cooldown off only so that spending the hourly quota takes seconds.
    stack = start_stack(RATELIMIT_ENABLED="true", RESEND_COOLDOWN_SECONDS="0")
    email, thief = new_email(), {"X-Device-Id": "thief-device"}
    sign_up(stack, email)
    assert password_login(stack, email, PHONE)[0] == 200  # the owner's phone has signed in: proven

    # Ten wrong passwords lock the account and spend the address's failures for the minute.
    for _ in range(10):
        assert password_login(stack, email, thief, "not the password")[0] in (401, 429)
    assert password_login(stack, email, thief)[0] in (401, 429)  # the thief's device stays out
    status, _, body = password_login(stack, email, PHONE)
    assert status == 200, body  # the owner's phone does not

    # Junk codes at the address from the thief's IP: the per-address code limits are per (address, IP).
    for _ in range(12):
        junk = {"email": email, "code": "000000", "new_password": NEW_PASSWORD}
        assert call(stack, "POST", "/auth/password/reset", junk)[0] in (400, 429)
        assert call(stack, "POST", "/auth/login/code/verify", {"email": email, "code": "000000"})[0] in (400, 429)
    owner = "127.0.0.2"
    assert call(stack, "POST", "/auth/password/forgot", {"email": email}, source=owner)[0] == 202
    reset = {"email": email, "code": mail(stack, email, "Reset").code, "new_password": NEW_PASSWORD}
    status, _, body = call(stack, "POST", "/auth/password/reset", reset, source=owner)
    assert status == 200, body
    # The new password, from a device that never signed in: the thief's failures were cleared by the reset.
    status, _, body = password_login(stack, email, LAPTOP, NEW_PASSWORD, source=owner)
    assert status == 200, body

    # The thief spends the hourly quota of reset codes (the owner's was the first of five); the request
    # over it mails nothing and leaves the last code, in the owner's mailbox, live.
    for count in range(2, 6):  # one at a time: a request overtaken by a newer one is dropped unmailed
        assert call(stack, "POST", "/auth/password/forgot", {"email": email})[0] == 202
        mail(stack, email, "Reset", count=count)
    acked = code_requests_acked(stack)
    assert call(stack, "POST", "/auth/password/forgot", {"email": email})[0] == 202
    wait_until_acked(stack, acked + 1)
    assert len([m for m in stack.sink.mails_to(email) if "Reset" in m.subject]) == 5
    reset = {"email": email, "code": mail(stack, email, "Reset", count=5).code, "new_password": PASSWORD}
    status, _, body = call(stack, "POST", "/auth/password/reset", reset, source=owner)
    assert status == 200, body


# 9. The second step told which addresses have an account.


def test_a_wrong_code_answers_alike_for_every_address_at_reset_and_at_sign_in(start_stack):
    stack = start_stack(RESEND_COOLDOWN_SECONDS="0")
    live, quiet, pending, unknown = new_email(), new_email(), new_email(), new_email()
    for address in (live, quiet):
        sign_up(stack, address)
    assert call(stack, "POST", "/auth/register", {"email": pending, "password": PASSWORD})[0] == 201
    for ask, subject in (("/auth/password/forgot", "Reset"), ("/auth/login/code", "sign-in code")):
        # A live code for one confirmed account only; the others have none of this purpose.
        assert call(stack, "POST", ask, {"email": live})[0] == 202
        mail(stack, live, subject)
    for step in ("/auth/password/reset", "/auth/login/code/verify"):
        for attempts_left in (4, 3):
            answers = {}
            for address in (live, quiet, pending, unknown):
                body = {"email": address, "code": "000000"}
                if step == "/auth/password/reset":
                    body["new_password"] = NEW_PASSWORD
                status, _, answer = call(stack, "POST", step, body)
                answers[address] = (status, answer["error"], answer.get("attempts_left"))
            assert set(answers.values()) == {(400, "invalid_code", attempts_left)}, (step, answers)


# 10. The guessing bound held per purpose: reset and sign-in codes were two budgets into one account.


def test_an_accounts_wrong_codes_over_every_purpose_spend_one_daily_budget(start_stack):
    stack = start_stack(RESEND_COOLDOWN_SECONDS="0", CODE_GUESSES_PER_ACCOUNT_PER_DAY="12")
    email = new_email()
    sign_up(stack, email)

    def guesses(step, code, count, **extra):
        return [call(stack, "POST", step, {"email": email, "code": wrong(code), **extra})[0] for _ in range(count)]

    assert call(stack, "POST", "/auth/password/forgot", {"email": email})[0] == 202
    first_reset = mail(stack, email, "Reset").code
    assert guesses("/auth/password/reset", first_reset, 5, new_password=NEW_PASSWORD) == [400] * 4 + [429]
    assert call(stack, "POST", "/auth/login/code", {"email": email})[0] == 202
    sign_in = mail(stack, email, "sign-in code").code
    assert guesses("/auth/login/code/verify", sign_in, 5) == [400] * 4 + [429]
    assert call(stack, "POST", "/auth/password/forgot", {"email": email})[0] == 202
    reset_code = mail(stack, email, "Reset", count=2).code
    assert guesses("/auth/password/reset", reset_code, 2, new_password=NEW_PASSWORD) == [400, 400]
    # Twelve wrong codes over two purposes: the account's day is spent, and its codes are refused, right ones
    # too, whichever purpose they are of.
    reset = {"email": email, "code": reset_code, "new_password": NEW_PASSWORD}
    status, _, body = call(stack, "POST", "/auth/password/reset", reset)
    assert (status, body["error"]) == (429, "too_many_attempts"), body
    assert call(stack, "POST", "/auth/login/code", {"email": email})[0] == 202
    fresh = mail(stack, email, "sign-in code", count=2).code
    status, _, body = call(stack, "POST", "/auth/login/code/verify", {"email": email, "code": fresh})
    assert (status, body["error"]) == (429, "too_many_attempts"), body
    # The owner's phone, which signed in before, is let through (the password still works as well).
    assert password_login(stack, email, PHONE)[0] == 200
    assert call(stack, "POST", "/auth/login/code", {"email": email})[0] == 202
    fresh = mail(stack, email, "sign-in code", count=3).code
    status, _, body = call(stack, "POST", "/auth/login/code/verify", {"email": email, "code": fresh}, PHONE)
    assert status == 200, body
