"""The "this wasn't me" undo under attack, end to end: real auth (waitress) and worker processes, this
machine's RabbitMQ and Redis, the mail sink.

Each story has a thief who holds the owner's password (phished) and sessions of their own, and
mailboxes of their own in the sink, beside the owner's; every code and link is read from the mail its
holder received. docs/security.md, 'Hardening the "this wasn't me" undo', has the rules these stories check.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse

import pytest

from devtools.stack import LocalStack
from tests.integration.test_lifecycle_flow import NEW_PASSWORD, PASSWORD, bearer, new_email

THIEF_PASSWORD = "the thief's own passphrase 9"
NOT_ME_LINK = re.compile(r"http://\S+/auth/not-me\?token=(\S+)")
# Short enough to wait out, long enough for a story to press its links well inside it.
UNDO_WINDOW_SECONDS = 12

CHANGED = "Your account's email address was changed"
CHANGED_BACK = "Your account's email address was changed back"
UNDONE = "The change of your account's email address was undone"
FROZEN = "Your account is frozen"
RESET = "Reset your password"


@pytest.fixture(scope="module")
def windowed(start_module_stack) -> LocalStack:
    """A short undo window, and no cooldown between codes (two accounts ask one address for a code)."""
    return start_module_stack(EMAIL_UNDO_WINDOW_SECONDS=str(UNDO_WINDOW_SECONDS), RESEND_COOLDOWN_SECONDS="0")


def titled(stack, email, subject, count=1):
    """The ``count``-th mail to ``email`` whose subject is exactly ``subject`` (waits for it)."""
    deadline = time.monotonic() + 20
    while True:
        found = [mail for mail in stack.sink.mails_to(email) if mail.subject == subject]
        if len(found) >= count or time.monotonic() > deadline:
            subjects = [mail.subject for mail in stack.sink.mails_to(email)]
            assert len(found) >= count, f"no mail {subject!r} to {email}: {subjects}"
            return found[count - 1]
        stack.sink.wait_for(email, count=len(stack.sink.mails_to(email)) + 1, timeout=1)


def link_in(mail, stack=None) -> str:
    """The mail's link token; with ``stack``, once auth has stored it (the worker tells auth as it mails,
    and a person is slower than the consumer, a test not always)."""
    found = NOT_ME_LINK.search(mail.text)
    assert found is not None, f"no link in {mail.subject!r}"
    deadline = time.monotonic() + 10
    while stack is not None and send(stack, "GET", f"/auth/not-me?token={found.group(1)}")[0] != 200:
        assert time.monotonic() < deadline, f"the link of {mail.subject!r} was never stored"
        time.sleep(0.2)  # the page counts against the link limit per (account, IP) too
    return found.group(1)


def send(stack, method, path, body=None, headers=None, source="127.0.0.1", form=None):
    """One request from ``source`` (any 127.0.0.0/8 address is this machine): (status, text)."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.auth_port, timeout=30, source_address=(source, 0))
    try:
        if form is not None:
            data = urllib.parse.urlencode(form)
            headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        else:
            data = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json", **(headers or {})} if body is not None else headers or {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def press(stack, token, source="127.0.0.1"):
    return send(stack, "POST", "/auth/not-me", form={"token": token}, source=source)


def log_in(stack, email, password=PASSWORD, agent="App/1.0 (Phone)"):
    status, _, body = stack.call(
        "POST", "/auth/login", {"email": email, "password": password}, headers={"User-Agent": agent}
    )
    return status, body


def register_and_confirm(stack, email, count=1) -> dict:
    """Register, confirm with the ``count``-th code mailed to the address, and sign in."""
    status, _, registered = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201, registered
    code = titled(stack, email, "Confirm your email address", count).code
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": code})[0] == 200
    status, pair = log_in(stack, email)
    assert status == 200, pair
    return {"id": registered["id"], **pair}


def move(stack, pair, to, count=1) -> None:
    """A confirmed address change to ``to``, its code read from ``to``'s mailbox."""
    ask = {"new_email": to, "password": PASSWORD}
    assert stack.call("POST", "/auth/email/change", ask, headers=bearer(pair))[0] == 202
    code = titled(stack, to, "Confirm your new email address", count).code
    status, _, body = stack.call("POST", "/auth/email/confirm", {"code": code}, headers=bearer(pair))
    assert status == 200, body


def reset(stack, email, code, password=NEW_PASSWORD):
    return stack.call("POST", "/auth/password/reset", {"email": email, "code": code, "new_password": password})


def me(stack, pair):
    return stack.call("GET", "/auth/me", headers=bearer(pair))


# --- high: the thief undoes the owner's undo ------------------------------------------------------


def test_the_thief_cannot_undo_the_owners_undo_nor_sign_in_with_the_phished_password(stack):
    owner_box, thief_box, thief_box_2 = new_email(), new_email(), new_email()
    owner = register_and_confirm(stack, owner_box)
    status, thief = log_in(stack, owner_box, agent="Thief/1.0")  # the phished password
    assert status == 200
    move(stack, thief, thief_box)  # X -> Y: the notice and its link go to X, the owner's
    move(stack, thief, thief_box_2)  # Y -> Z: the notice and its link go to Y, the thief's
    owners_link = link_in(titled(stack, owner_box, CHANGED), stack)
    thiefs_link = link_in(titled(stack, thief_box, CHANGED), stack)

    status, owners_page = press(stack, owners_link)
    assert status == 200
    # The password the thief phished no longer opens the account, at the restored address or elsewhere.
    assert log_in(stack, owner_box, agent="Thief/1.0")[0] == 401
    assert log_in(stack, thief_box_2, agent="Thief/1.0")[0] == 401
    # The thief's own link was voided by the owner's press: the login stays the owner's.
    status, page = press(stack, thiefs_link)
    assert status == 410 and "another link of the account was used first" in page
    assert log_in(stack, thief_box, agent="Thief/1.0")[0] == 401
    assert "Your address is back" in owners_page

    # Both addresses were told what happened; the reset code reached the owner and works.
    assert "undone" in titled(stack, owner_box, UNDONE).text
    assert owner_box in titled(stack, thief_box_2, CHANGED_BACK).text
    code = titled(stack, owner_box, RESET).code
    assert reset(stack, owner_box, code)[0] == 200
    status, fresh = log_in(stack, owner_box, NEW_PASSWORD)
    assert status == 200
    assert me(stack, fresh)[2]["id"] == owner["id"]
    assert me(stack, thief)[0] == 401 and me(stack, owner)[0] == 401


def test_the_thief_pressing_a_link_of_their_own_first_cannot_void_the_owners_undo(stack):
    owner_box, thief_box, thief_box_2 = new_email(), new_email(), new_email()
    owner = register_and_confirm(stack, owner_box)
    status, thief = log_in(stack, owner_box, agent="Thief/1.0")
    assert status == 200
    move(stack, thief, thief_box)
    move(stack, thief, thief_box_2)
    owners_link = link_in(titled(stack, owner_box, CHANGED), stack)
    thiefs_link = link_in(titled(stack, thief_box, CHANGED), stack)

    # The thief presses first, hoping to void the owner's link and keep the account with a reset at Y.
    assert press(stack, thiefs_link)[0] == 200
    thiefs_code = titled(stack, thief_box, RESET).code
    status, page = press(stack, owners_link)
    assert status == 200
    assert log_in(stack, owner_box, agent="Thief/1.0")[0] == 401
    assert reset(stack, thief_box, thiefs_code, THIEF_PASSWORD)[0] == 410  # no longer the account's address
    assert "Your address is back" in page
    assert reset(stack, owner_box, titled(stack, owner_box, RESET).code)[0] == 200
    status, fresh = log_in(stack, owner_box, NEW_PASSWORD)
    assert status == 200 and me(stack, fresh)[2]["id"] == owner["id"]


# --- high: a pending registration blocks the undo, and the reset lands in the thief's account ---------


def test_the_left_address_is_reserved_so_the_undo_and_the_owners_reset_reach_the_owners_account(stack):
    owner_box, thief_box = new_email(), new_email()
    owner = register_and_confirm(stack, owner_box)
    status, thief = log_in(stack, owner_box, agent="Thief/1.0")
    assert status == 200
    move(stack, thief, thief_box)
    # The thief registers the owner's address again, to block the undo and catch the owner's reset.
    status, _, body = stack.call("POST", "/auth/register", {"email": owner_box, "password": THIEF_PASSWORD})
    assert status == 409 and body["error"] == "email_taken"
    # Nor may another account move to it.
    other = register_and_confirm(stack, new_email())
    ask = {"new_email": owner_box, "password": PASSWORD}
    assert stack.call("POST", "/auth/email/change", ask, headers=bearer(other))[0] == 409

    status, page = press(stack, link_in(titled(stack, owner_box, CHANGED), stack))
    assert status == 200 and "Your address is back" in page
    assert log_in(stack, thief_box, agent="Thief/1.0")[0] == 401
    assert reset(stack, owner_box, titled(stack, owner_box, RESET).code)[0] == 200
    status, fresh = log_in(stack, owner_box, NEW_PASSWORD)
    assert status == 200
    assert me(stack, fresh)[2]["id"] == owner["id"]  # the original account, not an empty one


# --- medium: the old mailbox takes the account back after a legitimate change -------------------------


def test_the_new_address_contests_an_undo_from_the_old_mailbox_and_the_account_is_frozen(windowed):
    stack = windowed
    old_box, owners_new_box = new_email(), new_email()
    owner = register_and_confirm(stack, old_box)
    move(stack, owner, owners_new_box)  # the owner leaves a mailbox someone else now reads
    intruders_link = link_in(titled(stack, old_box, CHANGED), stack)

    assert press(stack, intruders_link)[0] == 200  # within the window: the undo happens...
    notice = titled(stack, owners_new_box, CHANGED_BACK)  # ...and the new address is told, with a link
    assert old_box in notice.text
    status, page = send(stack, "GET", f"/auth/not-me?token={link_in(notice, stack)}")
    assert status == 200 and "Freeze the account" in page
    status, page = press(stack, link_in(notice))
    assert status == 200 and "frozen" in page
    # Frozen for support: the intruder's reset code and any password open nothing.
    intruders_code = titled(stack, old_box, RESET).code
    assert reset(stack, old_box, intruders_code, THIEF_PASSWORD)[0] == 410
    assert log_in(stack, old_box, THIEF_PASSWORD)[0] == 401
    assert log_in(stack, owners_new_box)[0] == 401
    titled(stack, old_box, FROZEN)
    titled(stack, owners_new_box, FROZEN)


def test_past_the_undo_window_the_old_mailbox_undoes_nothing(windowed):
    stack = windowed
    old_box, owners_new_box = new_email(), new_email()
    owner = register_and_confirm(stack, old_box)
    move(stack, owner, owners_new_box)
    old_link = link_in(titled(stack, old_box, CHANGED), stack)
    time.sleep(UNDO_WINDOW_SECONDS + 0.5)
    status, page = press(stack, old_link)
    assert status == 410 and "could not be undone" in page
    assert me(stack, owner)[2]["email"] == owners_new_box
    assert log_in(stack, owners_new_box)[0] == 200
    # Nor is the old address reserved any more.
    assert stack.call("POST", "/auth/register", {"email": old_box, "password": THIEF_PASSWORD})[0] == 201


# --- medium: the link page's limit per account switched the owner's links off ------------------------


@pytest.fixture(scope="module")
def limited(start_module_stack) -> LocalStack:
    """Every limit at its default."""
    return start_module_stack(RATELIMIT_ENABLED="true")


def test_junk_links_naming_the_account_from_one_address_leave_the_owners_link_working(limited):
    stack, owner_box = limited, new_email()
    owner = register_and_confirm(stack, owner_box)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    status, _, owner = stack.call("POST", "/auth/password/change", change, headers=bearer(owner))
    assert status == 200
    owners_link = link_in(titled(stack, owner_box, "Your password was changed"), stack)
    account_id = me(stack, owner)[2]["id"]  # what a stolen session tells
    junk = f"{account_id}.{'A' * 43}"
    answers = [press(stack, junk, source="127.0.0.2")[0] for _ in range(12)]
    assert answers.count(429) >= 1 and set(answers) <= {410, 429}  # the prober meets its own limit

    status, page = send(stack, "GET", f"/auth/not-me?token={owners_link}")
    assert status == 200, page
    status, page = press(stack, owners_link)
    assert status == 200 and "secured" in page


def test_a_takeover_registration_gets_a_new_account_id(limited):
    stack, owner_box = limited, new_email()
    status, _, squatted = stack.call("POST", "/auth/register", {"email": owner_box, "password": THIEF_PASSWORD})
    assert status == 201
    # The first registrant's 201 names an account that is gone: its id opens no counter of the owner's.
    owner = register_and_confirm(stack, owner_box, count=2)
    assert owner["id"] != squatted["id"]
    assert me(stack, owner)[2]["id"] == owner["id"]


# --- low: a verified code applies to the account it was issued for ----------------------------------


def test_an_address_change_code_confirms_only_the_account_that_asked_for_it(windowed):
    stack, shared_box = windowed, new_email()
    first = register_and_confirm(stack, new_email())
    second = register_and_confirm(stack, new_email())
    for pair in (first, second):
        ask = {"new_email": shared_box, "password": PASSWORD}
        assert stack.call("POST", "/auth/email/change", ask, headers=bearer(pair))[0] == 202
    second_code = titled(stack, shared_box, "Confirm your new email address", count=2).code
    status, _, body = stack.call("POST", "/auth/email/confirm", {"code": second_code}, headers=bearer(first))
    assert status == 410 and body["error"] == "code_expired"
    assert me(stack, first)[2]["email"] != shared_box
    assert log_in(stack, shared_box)[0] == 401  # no account took the address
