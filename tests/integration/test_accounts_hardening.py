"""The accounts hardened against an attack from outside, on the real processes: waitress, the worker, SMTP.

Each test reproduces what the outside attack found against the running system:
address forms that made four accounts of one mailbox, a pending registration
taken over by whoever registered first, names that phish, a confirm that
tells the account's state, and passwords of one repeated character.
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack import http_json
from tests.integration.test_contract_flow import PASSWORD, confirm, emailed_codes, login, new_email, wrong
from tests.waiting import eventually


def register(stack, email, password=PASSWORD, name=None):
    body = {"email": email, "password": password}
    if name is not None:
        body["name"] = name
    return stack.call("POST", "/auth/register", body)


def assert_refused(answer, field):
    status, _, body = answer
    assert (status, body["error"]) == (422, "validation_error"), body
    assert field in body["fields"], body
    return body["fields"][field]


def code_requests_acked(stack) -> int:
    """How many code requests the worker has finished (mailed, or refused), from its processes' /metrics."""
    wanted = {"queue": stack.env["ACCOUNT_CREATION_QUEUE"], "outcome": "ack"}
    acked = 0
    for url in stack.worker_status_urls:
        status, _, text = http_json("GET", f"{url}/metrics")
        assert status == 200
        acked += sum(
            int(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "messages_consumed_total" and wanted.items() <= sample.labels.items()
        )
    return acked


def wait_until_acked(stack, count: int, timeout: float = 30.0) -> None:
    eventually(lambda: code_requests_acked(stack) >= count, f"the worker finished {count} requests", timeout, 0.1)


# --- Address forms: only plain ASCII dot-atom addresses with a real domain ------------------------


@pytest.mark.parametrize(
    "address",
    [
        '"v"@example.com',  # quoted local part: another spelling of v@example.com
        '"\\\x0b"@example.com',  # a quoted vertical tab: put a header into the mail
        "v\x0b@example.com",
        "v@[127.0.0.1]",  # IP literal
        "v@localhost",  # single-label domain
        "v@example",
        "v@x.test",  # special-use domain (RFC 6761): never delivered on the internet
        "a..b@example.com",
        "v@example.com\r\nBcc: w@example.com",
    ],
)
def test_address_forms_other_than_plain_dot_atom_are_422(stack, address):
    assert_refused(register(stack, address), "email")
    assert_refused(stack.call("POST", "/auth/resend-code", {"email": address}), "email")


def test_a_plain_address_registers_once_in_its_normalized_form(stack):
    local = f"Ada.Lovelace+it-{uuid.uuid4().hex[:8]}"
    status, _, body = register(stack, f"  {local}@Example.ORG ")
    assert (status, body["email"]) == (201, f"{local.lower()}@example.org")
    assert_refused(register(stack, f'"{local}"@example.org'), "email")


# --- Pre-registration takeover: a pending registration is taken over by the next one --------------


def test_registering_a_pending_address_takes_it_over_and_voids_the_first_code(stack):
    email = new_email()
    status, _, first = register(stack, email, password="the first registrant's password")
    assert status == 201
    [first_mail] = stack.sink.wait_for(email, count=1, timeout=15)

    status, _, second = register(stack, email, password="the owner's own password")
    assert (status, second["status"]) == (201, "pending_verification")
    assert second["id"] != first["id"]  # a new account: the first registrant's id names nothing of the owner's
    mails = stack.sink.wait_for(email, count=2, timeout=15)
    assert len(mails) == 2
    last = mails[-1]
    assert last.code != first_mail.code

    # The email says when the registration was made, in UTC, to the minute.
    stamp = re.search(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC", last.text)
    assert stamp, last.text
    made = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - made) < timedelta(minutes=2)

    assert confirm(stack, email, last.code)[0] == 200
    status, _, body = login(stack, email, "the first registrant's password")
    assert (status, body["error"]) == (401, "invalid_credentials")
    assert login(stack, email, "the owner's own password")[0] == 200
    assert confirm(stack, email, first_mail.code)[0] == 410
    assert register(stack, email, password="a third password, too late")[0] == 409


def test_parallel_registrations_of_one_address_leave_the_live_code_in_the_last_mail(start_stack):
    stack = start_stack(MAX_CODES_PER_HOUR="50", MAX_CODES_PER_DAY="50")
    # Each mail is accepted after its own random pause: mails started in one order would land in another.
    stack.sink.delay_seconds = (0.0, 0.3)
    email = new_email()
    passwords = [f"parallel registrant number {index}" for index in range(8)]
    with ThreadPoolExecutor(len(passwords)) as pool:
        answers = list(pool.map(lambda password: register(stack, email, password), passwords))
    assert [status for status, _, _ in answers] == [201] * len(passwords)
    assert len({body["id"] for _, _, body in answers}) == len(passwords)  # each takeover makes a new account

    wait_until_acked(stack, len(passwords))
    mails = stack.sink.mails_to(email)
    assert mails, "no code was mailed"
    last = mails[-1]
    assert confirm(stack, email, last.code)[0] == 200
    signed_in = [password for password in passwords if login(stack, email, password)[0] == 200]
    assert len(signed_in) == 1
    for earlier in {mail.code for mail in mails} - {last.code}:
        assert confirm(stack, email, earlier)[0] == 410


def test_a_pending_account_past_its_lifetime_is_as_if_it_did_not_exist(start_stack):
    stack = start_stack(UNVERIFIED_TTL_SECONDS="2")
    email = new_email()
    status, _, first = register(stack, email, password="registered and never confirmed")
    assert status == 201
    [code] = emailed_codes(stack, email)
    # Its right password answers 403 (unconfirmed) while it lives, and counts no failure: asked until it is gone.
    eventually(
        lambda: login(stack, email, "registered and never confirmed")[0] != 403,
        "the pending account past its lifetime",
        every=0.2,
    )

    status, _, body = login(stack, email, "registered and never confirmed")
    assert (status, body["error"]) == (401, "invalid_credentials")
    assert confirm(stack, email, code)[2]["error"] == "code_expired"

    status, _, second = register(stack, email, password="a new registration")
    assert status == 201 and second["id"] != first["id"]
    [_, new_code] = emailed_codes(stack, email, count=2)
    assert confirm(stack, email, new_code)[0] == 200
    assert login(stack, email, "a new registration")[0] == 200


# --- Phishing through the name: names cannot phish ------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Ada\u202eevil.exe", "\u2066Ada\u2069", "Ada\u200f", "Ada\x85", "Ada\u2028Lovelace", "Ada\tLovelace"],
)
def test_a_name_with_control_or_bidirectional_characters_is_422(stack, name):
    assert_refused(register(stack, new_email(), name=name), "name")


def test_the_verification_email_does_not_print_the_name(stack):
    email = new_email()
    assert register(stack, email, name="Quintessa Marlowe")[0] == 201
    [mail] = stack.sink.wait_for(email, timeout=15)
    assert "Quintessa" not in mail.text and "Quintessa" not in mail.html
    assert "Quintessa" not in mail.subject


# --- Confirm tells the state: confirm does not tell the account's state ---------------------------


def test_confirm_answers_410_for_unknown_and_for_a_confirmed_address_unless_it_is_the_confirming_code(stack):
    status, _, body = confirm(stack, new_email(), "123456")
    assert (status, body["error"]) == (410, "code_expired")

    email = new_email()
    register(stack, email)
    [code] = emailed_codes(stack, email)
    assert confirm(stack, email, code)[0] == 200
    status, _, body = confirm(stack, email, wrong(code))
    assert (status, body["error"]) == (410, "code_expired")
    status, _, body = confirm(stack, email, code)
    assert (status, body["status"]) == (200, "verified")


# --- Repeated and sequential passwords ------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["aaaaaaaa", " " * 8, "abcdefghij", "87654321", "zyxwvuts", "abababab", "qwertyqwerty", "zxcvbnm,./", "abc123xyz"],
)
def test_a_repeated_or_sequential_password_is_422_with_a_clear_message(stack, password):
    [message] = assert_refused(register(stack, new_email(), password=password), "password")
    assert "repeated or sequential" in message
