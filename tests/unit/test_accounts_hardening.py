"""The accounts hardened against an attack from outside (docs/security.md): the rules on fakes.

The same use cases and handlers as production, wired on mongomock, fakeredis
and the in-memory broker (tests/unit/conftest.py); the real processes are
exercised by tests/integration/test_accounts_hardening.py and
tests/faults/test_resend_cost.py.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import mongomock
import pytest

from auth_service import bootstrap as auth_bootstrap
from auth_service.adapters import mongo_schema
from auth_service.config import Settings as AuthSettings
from auth_service.domain import confirmations
from auth_service.domain.accounts import name_problem, next_sequence, password_problem
from auth_service.domain.addresses import AddressRefused, canonical_address
from auth_service.domain.confirmations import ConfirmingCodes
from auth_service.domain.password_patterns import is_repeated_or_sequential
from auth_service.service_layer.outbox_relay import OutboxRelay
from common.messaging.messages import CodeRequested, Purpose
from tests.fakes import InMemoryBroker, as_delivered
from tests.unit.conftest import BASE_ENV

PASSWORD = "correct horse battery"


def register(system, email, password=PASSWORD, **extra):
    return system.client.post("/auth/register", json={"email": email, "password": password, **extra})


def confirm(system, email, code):
    return system.client.post("/auth/confirm", json={"email": email, "code": code})


def login(system, email, password=PASSWORD):
    return system.client.post("/auth/login", json={"email": email, "password": password})


def stored(system, email):
    return system.auth.users.by_email(email)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- Address forms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored_as"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  Ada.Lovelace+tag@Example.ORG ", "ada.lovelace+tag@example.org"),
        ("o'brien@mail.example.co.uk", "o'brien@mail.example.co.uk"),
        ("a!#$%&*+/=?^_`{|}~-b@example.net", "a!#$%&*+/=?^_`{|}~-b@example.net"),
        ("x@XN--BCHER-KVA.example", "x@xn--bcher-kva.example"),  # an IDN domain, spelled in ASCII
    ],
)
def test_plain_dot_atom_addresses_are_accepted_in_one_stored_form(raw, stored_as):
    assert canonical_address(raw) == stored_as


@pytest.mark.parametrize(
    "raw",
    [
        '"v"@example.com',
        '"v w"@example.com',
        '"\\\x0b"@example.com',
        "v\x0b@example.com",
        "v\r\n@example.com",
        "v@[192.0.2.1]",
        "v@[IPv6:2001:db8::1]",
        "v@localhost",
        "v@example",
        "v@x.test",
        "v@x.invalid",
        "v@printer.local",
        "v@x.onion",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "@example.com",
        "v@-example.com",
        "j\u00f6hn@example.com",
        "v@b\u00fccher.example",
        "Ada <ada@example.com>",
        "v@example.com\r\nBcc: w@example.com",
    ],
)
def test_every_other_form_is_refused_with_a_reason(raw):
    with pytest.raises(AddressRefused) as refused:
        canonical_address(raw)
    assert str(refused.value)


def test_four_spellings_of_one_mailbox_are_one_account_at_most(system):
    assert register(system, "v@example.com").status_code == 201
    for spelling in ('"v"@example.com', '"\\v"@example.com', "v@[192.0.2.1]"):
        response = register(system, spelling)
        assert response.status_code == 422 and "email" in response.json["fields"]
    assert system.auth.users._users.count_documents({}) == 1


@pytest.mark.parametrize("path", ["/auth/register", "/auth/confirm", "/auth/resend-code", "/auth/login"])
def test_every_endpoint_refuses_a_quoted_address_with_422(system, path):
    body = {"email": '"v"@example.com', "password": PASSWORD, "code": "123456"}
    fields = {"/auth/register": ("email", "password"), "/auth/confirm": ("email", "code")}
    fields.update({"/auth/resend-code": ("email",), "/auth/login": ("email", "password")})
    response = system.client.post(path, json={key: body[key] for key in fields[path]})
    assert response.status_code == 422 and "email" in response.json["fields"]


# --- Pre-registration takeover --------------------------------------------------------------------


def test_a_second_registration_takes_the_pending_account_over(system, unique_email):
    email = unique_email()
    first = register(system, email, "the first registrant's password", name="First")
    second = register(system, email, "the owner's own password")
    assert (first.status_code, second.status_code) == (201, 201)
    # A new account id: whoever registered first holds the old one, which every link of the account would name.
    assert second.json["id"] != first.json["id"]
    assert system.auth.users.by_id(first.json["id"]) is None
    account = stored(system, email)
    assert account.name is None and account.registered_seq == account.code_seq
    old, new = system.codes_for(email)
    assert old != new

    assert confirm(system, email, old).status_code == 400  # void: the live code is the newer one
    assert confirm(system, email, new).status_code == 200
    assert login(system, email, "the first registrant's password").status_code == 401
    assert login(system, email, "the owner's own password").status_code == 200


def test_a_code_issued_before_a_takeover_cannot_confirm_it(system, unique_email):
    """The race the sequence numbers close: the owner's old code reaches the worker after someone
    else re-registered the address but before the new code replaced the old one in Redis."""
    email = unique_email()
    register(system, email, "the owner's password")
    [old] = system.codes_for(email)
    creation_queue = system.worker_settings.account_creation_queue
    system.broker.hold.add(creation_queue)  # the takeover's code request waits in the queue
    assert register(system, email, "someone else's password").status_code == 201

    response = confirm(system, email, old)  # the worker still holds the old code and says "verified"
    assert (response.status_code, response.json["error"]) == (410, "code_expired")
    assert not stored(system, email).verified
    assert login(system, email, "someone else's password").status_code == 403

    system.broker.release(creation_queue)
    new = system.codes_for(email)[-1]
    assert confirm(system, email, new).status_code == 200


def apply_verified(system, account):
    """What auth's consumer does with a code.verified for a registration's code of this sequence."""
    return system.auth.verified_codes.apply_verified(
        Purpose.VERIFY_EMAIL, account.id, None, None, sequence=account.code_seq
    )


def test_a_late_confirmation_message_for_an_earlier_registration_is_not_applied(system, unique_email):
    email = unique_email()
    register(system, email, "the first password")
    account = stored(system, email)
    register(system, email, "the second password")
    assert not apply_verified(system, account)
    assert not stored(system, email).verified
    current = stored(system, email)
    assert apply_verified(system, current)


def test_a_pending_account_past_its_lifetime_is_absent_and_can_be_registered_anew(make_system, unique_email):
    system = make_system({"UNVERIFIED_TTL_SECONDS": "3600"})
    email = unique_email()
    first = register(system, email, "registered and never confirmed")
    [code] = system.codes_for(email)
    system.clock.advance(3600)

    assert login(system, email, "registered and never confirmed").json["error"] == "invalid_credentials"
    assert confirm(system, email, code).json["error"] == "code_expired"
    system.cooldown_clock.advance(120)
    assert system.client.post("/auth/resend-code", json={"email": email}).status_code == 202
    assert len(system.codes_for(email)) == 1  # nothing mailed for an account that is no more

    second = register(system, email, "a new registration")
    assert second.status_code == 201 and second.json["id"] != first.json["id"]
    assert system.auth.users._users.count_documents({"email": email}) == 1
    assert confirm(system, email, system.codes_for(email)[-1]).status_code == 200


def test_pending_accounts_carry_their_expiry_and_confirmed_ones_do_not(system, unique_email):
    email = unique_email()
    register(system, email)
    pending = stored(system, email)
    lifetime = pending.expires_at - pending.created_at
    assert lifetime.total_seconds() == system.auth_settings.unverified_ttl_seconds == 604800
    confirm(system, email, system.codes_for(email)[0])
    assert stored(system, email).expires_at is None


def test_mongodb_deletes_pending_accounts_through_a_ttl_index():
    database = mongomock.MongoClient()["auth"]
    mongo_schema.migrate(database, unverified_ttl_seconds=60, now=datetime.now(UTC), in_process=False)
    index = database["users"].index_information()["pending_expiry"]
    assert index["key"] == [("expires_at", 1)] and index["expireAfterSeconds"] == 0


def test_pending_accounts_stored_before_they_expired_are_given_a_lifetime_at_start(unique_email):
    database = mongomock.MongoClient()["auth"]
    email = unique_email()
    database["users"].insert_one(
        {
            "_id": "stored-by-an-earlier-version",
            "email": email,
            "name": None,
            "password_hash": "x",
            "status": "pending_verification",
            "created_at": datetime.now(UTC),
        }
    )
    auth = auth_bootstrap.build(
        AuthSettings.from_env(BASE_ENV), mode=auth_bootstrap.Mode.IN_PROCESS, database=database, bus=InMemoryBroker()
    )
    assert auth.users.by_email(email).expires_at is not None


def test_sequence_numbers_rise_even_when_clocks_disagree():
    early = datetime(2026, 1, 1, tzinfo=UTC)
    later_reading = next_sequence(0, early)
    assert next_sequence(later_reading, datetime(2025, 1, 1, tzinfo=UTC)) == later_reading + 1
    assert next_sequence(later_reading, datetime(2027, 1, 1, tzinfo=UTC)) > later_reading + 1


# --- Phishing through the name --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Ada\u202eexe.pdf", "\u2066Ada\u2069", "Ada\u200f", "\u061cAda", "Ada\x85", "Ada\u2028", "Ada\x7f", "tab\there"],
)
def test_names_with_control_or_bidirectional_characters_are_refused(system, unique_email, name):
    assert name_problem(name)
    response = register(system, unique_email(), name=name)
    assert response.status_code == 422 and "name" in response.json["fields"]


@pytest.mark.parametrize(
    "name", ["Ada Lovelace", "José Álvarez", "\u0645\u062d\u0645\u062f", "\u674e\u96f7", "ZWNJ\u200cok"]
)
def test_names_in_any_script_are_accepted(name):
    assert name_problem(name) is None


def test_the_name_is_not_in_the_verification_email(system, unique_email):
    email = unique_email()
    register(system, email, name="Quintessa Marlowe")
    [mail] = [message for message in system.outbox if email in message.recipients]
    assert "Quintessa" not in mail.body and "Quintessa" not in mail.html


# --- Confirm tells the state ----------------------------------------------------------------------


def test_a_confirmed_address_answers_410_unless_given_the_code_that_confirmed_it(system, unique_email):
    email = unique_email()
    register(system, email)
    [code] = system.codes_for(email)
    assert confirm(system, email, code).status_code == 200
    response = confirm(system, email, wrong(code))
    assert (response.status_code, response.json["error"]) == (410, "code_expired")
    assert confirm(system, email, code).json == {"email": email, "status": "verified"}


def test_a_retry_after_202_learns_the_outcome_applied_by_the_consumer(system, unique_email):
    email = unique_email()
    register(system, email)
    [code] = system.codes_for(email)
    submissions = system.worker_settings.confirm_email_code_queue
    system.broker.hold.add(submissions)
    assert confirm(system, email, code).status_code == 202
    system.broker.release(submissions)  # the worker judges it; auth's consumer applies account.confirmed
    assert stored(system, email).verified
    assert confirm(system, email, code).status_code == 200
    assert confirm(system, email, wrong(code)).status_code == 410


def test_the_account_keeps_a_keyed_hash_of_the_confirming_code_never_the_code(system, unique_email):
    email = unique_email()
    register(system, email)
    [code] = system.codes_for(email)
    confirm(system, email, code)
    document = system.auth.users._users.find_one({"email": email})
    assert code not in str(document)
    account = stored(system, email)
    tag = account.confirmed_code_tag
    assert len(tag) == 64 and tag != ConfirmingCodes(b"another key" * 3).tag(account.id, code)


def test_confirming_codes_are_compared_in_constant_time(monkeypatch):
    compared = []
    real = confirmations.hmac.compare_digest
    monkeypatch.setattr(confirmations.hmac, "compare_digest", lambda a, b: compared.append(1) or real(a, b))
    codes = ConfirmingCodes.from_secret("a secret of at least thirty-two bytes!!")
    tag = codes.tag("user-1", "123456")
    assert codes.matches(tag, "user-1", "123456")
    assert not codes.matches(tag, "user-2", "123456")  # bound to the account
    assert not codes.matches(None, "user-1", "123456")
    assert compared == [1, 1]


# --- Resend timing: the same work for every address -----------------------------------------------


class RecordingRepository:
    """Wraps a repository and writes down which of its methods the request thread called."""

    def __init__(self, inner, calls):
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name):
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def recorded(*args, **kwargs):
            self._calls.append(name)
            return attribute(*args, **kwargs)

        return recorded


ASKED_BY_ADDRESS = [
    # path, purpose, which of (confirmed, pending, unknown) get a code
    ("/auth/resend-code", Purpose.VERIFY_EMAIL, ("pending",)),
    ("/auth/password/forgot", Purpose.RESET_PASSWORD, ("confirmed", "pending")),
    ("/auth/login/code", Purpose.SIGN_IN, ("confirmed",)),
]


@pytest.mark.parametrize(("path", "purpose", "mailed"), ASKED_BY_ADDRESS, ids=["resend", "forgot", "login-code"])
def test_a_code_asked_by_address_costs_the_request_the_same_whatever_the_address(
    make_system, unique_email, path, purpose, mailed
):
    woken = []
    system = make_system(resend_requested=lambda: woken.append(1))
    addresses = {"confirmed": unique_email(), "pending": unique_email(), "unknown": unique_email()}
    register(system, addresses["confirmed"])
    assert confirm(system, addresses["confirmed"], system.codes_for(addresses["confirmed"])[-1]).status_code == 200
    register(system, addresses["pending"])
    system.cooldown_clock.advance(120)
    auth = system.auth
    calls: list[str] = []
    # Every store the request could reach: the accounts (through either use case) and the stored requests.
    auth.registration._users = RecordingRepository(auth.registration._users, calls)
    auth.password_reset._users = RecordingRepository(auth.password_reset._users, calls)
    auth.sign_in._users = RecordingRepository(auth.sign_in._users, calls)
    auth.code_asks._requests = RecordingRepository(auth.code_asks._requests, calls)
    queue = system.auth_settings.account_creation_queue
    published_before = len(system.broker.deliveries)
    requested_before = len(system.broker.sent_to(queue))
    work = {}
    for kind, address in addresses.items():
        calls.clear()
        assert system.client.post(path, json={"email": address}).status_code == 202
        work[kind] = list(calls)
    assert work == {kind: ["add"] for kind in addresses}  # one insert, whatever the address
    assert len(system.broker.deliveries) == published_before  # nothing published by the request
    assert woken == [1, 1, 1]

    assert auth.code_asks.process() == 3  # the relay's round: codes only where the flow mails them
    requested = system.broker.sent_to(queue)[requested_before:]
    assert {(m.type, m.body["purpose"]) for m in requested} == {(CodeRequested.TYPE, purpose.value)}
    assert sorted(m.body["email"] for m in requested) == sorted(addresses[kind] for kind in mailed)


def test_the_relay_acts_on_a_resend_soon_after_being_woken():
    woken_at: list[float] = []
    handled = threading.Event()
    first_round_done = threading.Event()

    def resends() -> int:
        if woken_at:
            handled.set()
        return 0

    class NothingDue:
        def relay_due(self) -> int:
            first_round_done.set()  # the last step of a round, after its resends
            return 0

    wakeup = threading.Event()
    relay = OutboxRelay(NothingDue(), interval_seconds=60, resends=resends, wakeup=wakeup, headstart_seconds=0.05)
    relay.start()
    try:
        assert first_round_done.wait(5)  # from now on the relay waits (60 s unless woken)
        woken_at.append(time.monotonic())
        wakeup.set()
        assert handled.wait(2)
        assert time.monotonic() - woken_at[0] >= 0.05  # the request that woke it answered first
    finally:
        relay.stop()
        relay.join(2)


# --- Repeated and sequential passwords ------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaa",
        " " * 8,
        "AAAAAAAAAAAA",
        "12345678",
        "87654321",
        "abcdefgh",
        "ABCDEFGHIJ",
        "zyxwvuts",
        "qwertyui",
        "poiuytre",
        "asdfghjkl;'",
        "zxcvbnm,./",
        "!@#$%^&*()",
        "1234abcd",
        "abc123xyz",
        "aaa111bbb",
        "abababab",
        "123123123",
        "abcdabcd",
        "qwertyqwerty",
        "passwordpassword",
    ],
)
def test_repeated_and_sequential_patterns_are_refused(password):
    assert is_repeated_or_sequential(password)
    assert password_problem(password) is not None  # the common-password list may have named it first


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "Tr0ub4dor&3",
        "correct horse abc",  # holds a run, is not one
        "Hunter2Hunter2",  # a repeated unit that is neither short nor a pattern
        "kitten mittens",
        "éàüöéàüö-ñ",
        "qazxswedcvfr",  # keyboard columns zig-zagging: not along one row
    ],
)
def test_passwords_that_only_contain_a_run_are_accepted(password):
    assert not is_repeated_or_sequential(password)


def test_a_patterned_password_is_422_with_a_clear_message(system, unique_email):
    response = register(system, unique_email(), password="aaaaaaaa")
    assert response.status_code == 422
    [message] = response.json["fields"]["password"]
    assert "repeated or sequential" in message and "aaaaaaaa" in message


def test_the_length_and_common_password_rules_still_come_first(system, unique_email):
    assert "at least 8 bytes" in register(system, unique_email(), password="aaaa").json["fields"]["password"][0]
    assert "too common" in register(system, unique_email(), password="12345678").json["fields"]["password"][0]


def test_a_submission_carries_the_keyed_hash_beside_the_code(system, unique_email):
    email = unique_email()
    register(system, email)
    [code] = system.codes_for(email)
    confirm(system, email, wrong(code))
    [submission] = system.broker.sent_to(system.worker_settings.confirm_email_code_queue)
    delivered = as_delivered(submission)
    assert set(delivered.body) == {
        "type",
        "purpose",
        "email",
        "code",
        "link_token",
        "user_id",
        "submitted_at",
        "confirmation",
        "proven_device",
    }
    assert delivered.body["confirmation"] != delivered.body["code"]
