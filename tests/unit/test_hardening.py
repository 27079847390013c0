"""Input handling, passwords, caching and enumeration at the HTTP boundary, on the fakes."""

from __future__ import annotations

import json

import bcrypt
import mongomock
import pytest

from auth_service import bootstrap as auth_bootstrap
from auth_service.adapters.cooldowns import InMemoryCooldowns
from auth_service.config import Settings as AuthSettings
from auth_service.domain import common_passwords
from auth_service.domain.accounts import password_problem
from common.messaging.messages import Purpose
from tests.fakes import InMemoryBroker
from tests.unit.conftest import BASE_ENV
from tests.unit.test_rate_limits import limited

PASSWORD = "correct horse battery"


def assert_contract_error(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.json
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]


def register(client, email, password=PASSWORD):
    return client.post("/auth/register", json={"email": email, "password": password})


def verified(system, email, password=PASSWORD):
    assert register(system.client, email, password).status_code == 201
    [code] = system.codes_for(email)
    assert system.client.post("/auth/confirm", json={"email": email, "code": code}).status_code == 200


# --- input -------------------------------------------------------------------


def test_body_over_the_cap_is_413_with_the_error_body(system):
    limit = system.auth_settings.max_body_bytes
    raw = json.dumps({"email": "a@example.com", "password": "x" * limit})
    response = system.client.post("/auth/register", data=raw, content_type="application/json")
    assert_contract_error(response, 413, "payload_too_large")


def test_body_just_under_the_cap_is_read(system, unique_email):
    limit = system.auth_settings.max_body_bytes
    body = {"email": unique_email(), "password": PASSWORD, "name": ""}
    body["name"] = "n" * (limit - len(json.dumps(body)))
    raw = json.dumps(body)
    assert len(raw) == limit
    response = system.client.post("/auth/register", data=raw, content_type="application/json")
    assert_contract_error(response, 422, "validation_error")  # read and judged: the name is too long
    assert "name" in response.json["fields"]


@pytest.mark.parametrize("path", ["/auth/register", "/auth/confirm", "/auth/resend-code", "/auth/login"])
def test_unknown_fields_are_refused(system, path):
    body = {"email": "a@example.com", "password": PASSWORD, "code": "123456", "is_admin": True}
    response = system.client.post(path, json=body)
    assert_contract_error(response, 422, "validation_error")
    assert "is_admin" in response.json["fields"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ('{"email": "a@example.com"}', "text/plain"),
        ("email=a@example.com", "application/x-www-form-urlencoded"),
        ('{"email": ', "application/json"),
        ("[1, 2]", "application/json"),
        ('"a string"', "application/json"),
        ("null", "application/json"),
        ("", "application/json"),
        (b"\xff\xfe{}", "application/json"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(system, data, content_type):
    for path in ["/auth/register", "/auth/confirm", "/auth/resend-code", "/auth/login"]:
        response = system.client.post(path, data=data, content_type=content_type)
        assert_contract_error(response, 400, "bad_request")


def test_unknown_path_is_404_and_wrong_method_405_with_the_error_body(system):
    assert_contract_error(system.client.get("/auth/nothing-here"), 404, "not_found")
    wrong_method = system.client.get("/auth/login")
    assert_contract_error(wrong_method, 405, "method_not_allowed")
    assert "POST" in wrong_method.headers["Allow"]
    assert_contract_error(system.client.delete("/auth/me"), 405, "method_not_allowed")


def test_non_unicode_text_is_a_validation_error_not_a_crash(system):
    raw = '{"email": "a@example.com", "password": "abc\\ud800defghij", "name": "\\udfff"}'
    response = system.client.post("/auth/register", data=raw, content_type="application/json")
    assert_contract_error(response, 422, "validation_error")
    assert set(response.json["fields"]) == {"password", "name"}


# --- passwords -----------------------------------------------------------------


# Distinct characters, so that only the length rule can refuse them (one repeated would be a pattern).
THREE_BYTE_CHARACTERS = "".join(chr(0x4E00 + 7 * index) for index in range(24))
FOUR_BYTE_CHARACTERS = "".join(chr(0x1F600 + index) for index in range(18))


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("éàüö", True),  # 4 characters, 8 bytes: the floor counts bytes
        ("a" + "éàü", False),  # 7 bytes
        (THREE_BYTE_CHARACTERS, True),  # 72 bytes
        (THREE_BYTE_CHARACTERS + "a", False),  # 73 bytes
        ("x" * 71 + "é", False),  # 73 bytes, 72 characters
        (FOUR_BYTE_CHARACTERS, True),  # 72 bytes of four-byte characters
        (FOUR_BYTE_CHARACTERS + "a", False),
    ],
)
def test_password_length_is_counted_in_utf8_bytes(system, unique_email, password, accepted):
    response = register(system.client, unique_email(), password)
    if accepted:
        assert response.status_code == 201
    else:
        assert_contract_error(response, 422, "validation_error")
        assert list(response.json["fields"]) == ["password"]


@pytest.mark.parametrize("password", ["password", "Password", "PASSWORD", "12345678", "iloveyou", "trustno1"])
def test_common_passwords_are_refused(system, unique_email, password):
    response = register(system.client, unique_email(), password)
    assert_contract_error(response, 422, "validation_error")
    assert "common" in response.json["fields"]["password"][0]


def test_the_common_password_list_is_shipped_and_loaded_once():
    words = common_passwords.LIST_PATH.read_text().splitlines()
    assert len(words) == 10_000
    assert all(8 <= len(word.encode()) <= 72 and word == word.lower() for word in words)
    common_passwords._common.cache_clear()
    assert password_problem("baseball") is not None
    assert password_problem("a much less usual passphrase") is None
    assert common_passwords._common.cache_info().misses == 1


def test_the_common_password_list_answers_as_a_set_of_its_words_would():
    words = common_passwords.LIST_PATH.read_text().splitlines()
    assert words == sorted(set(words)), "shipped sorted and distinct: it is searched by bisection"
    as_set = frozenset(words)
    common_passwords._common.cache_clear()
    listed = common_passwords._common()
    assert len(listed) == len(as_set)
    near_misses = [variant for word in words[::7] for variant in (word[:-1], word + "a", word + "\n", "0" + word)]
    for probe in [*words, *near_misses, "", "\n", " ", "zzzzzzzzzzzzzzzz", "\x00", "é" * 8, 12345678, None]:
        assert (probe in listed) == (probe in as_set), probe


@pytest.mark.parametrize(
    "words", [[], ["a"], ["b", "a", "a"], ["\x00", "\t", "a\r", "é", "😀", "zz", "z"], ["c", "a", "b"]]
)
def test_sorted_words_answer_as_a_set_for_any_words(words):
    listed = common_passwords.SortedWords.of(words)
    assert len(listed) == len(set(words))
    for probe in [*words, "", "a", "b", "c", "\x00", "\t", "z", "zz", "😀", "aa"]:
        assert (probe in listed) == (probe in set(words)), probe


@pytest.mark.parametrize("word", ["", "a\nb"])
def test_sorted_words_refuse_a_word_they_could_not_hold(word):
    with pytest.raises(ValueError):
        common_passwords.SortedWords.of(["a", word])


def test_login_never_fails_on_a_password_bcrypt_would_refuse(system, unique_email):
    email = unique_email()
    verified(system, email)
    for password in ["x" * 73, "é" * 40, "x" * 1024]:
        response = system.client.post("/auth/login", json={"email": email, "password": password})
        assert_contract_error(response, 401, "invalid_credentials")


def auth_with_cost(rounds: int, database):
    settings = AuthSettings.from_env({**BASE_ENV, "BCRYPT_ROUNDS": str(rounds)})
    return auth_bootstrap.build(
        settings,
        mode=auth_bootstrap.Mode.IN_PROCESS,
        database=database,
        bus=InMemoryBroker(),
        cooldowns=InMemoryCooldowns(),
    )


def test_login_rehashes_when_the_configured_cost_rose(unique_email):
    database = mongomock.MongoClient()["auth"]
    weaker, stronger = auth_with_cost(4, database), auth_with_cost(5, database)
    email = unique_email()
    user = weaker.registration.register(email, PASSWORD, None)
    weaker.verified_codes.apply_verified(Purpose.VERIFY_EMAIL, user.id, None, None, sequence=user.code_seq)
    assert weaker.users.by_id(user.id).password_hash.startswith("$2b$04$")

    def login(password):
        return stronger.app.test_client().post("/auth/login", json={"email": email, "password": password})

    assert login("not the password").status_code == 401
    assert weaker.users.by_id(user.id).password_hash.startswith("$2b$04$")  # only a right password is rehashed

    assert login(PASSWORD).status_code == 200
    new_hash = weaker.users.by_id(user.id).password_hash
    assert new_hash.startswith("$2b$05$")
    assert bcrypt.checkpw(PASSWORD.encode(), new_hash.encode())

    assert login(PASSWORD).status_code == 200
    assert weaker.users.by_id(user.id).password_hash == new_hash  # the cost has not risen again


# --- caching -------------------------------------------------------------------


def assert_not_cached(response) -> None:
    assert response.headers["Cache-Control"] == "no-store", response.status_code
    assert response.headers["Pragma"] == "no-cache"


def test_confirm_is_never_cached_whatever_its_status(make_system, unique_email):
    system = make_system({"CODE_MAX_ATTEMPTS": "2"})
    client = system.client
    email = unique_email()
    register(client, email)
    [code] = system.codes_for(email)
    wrong = "000000" if code != "000000" else "111111"
    seen = {}

    def confirm(body, **kwargs):
        response = client.post("/auth/confirm", json=body, **kwargs) if body is not None else client.post(**kwargs)
        seen[response.status_code, (response.json or {}).get("error")] = response
        return response

    confirm({"email": unique_email(), "code": "123456"})  # 410 code_expired
    confirm({"email": email, "code": "12"})  # 422
    confirm(None, path="/auth/confirm", data="[]", content_type="application/json")  # 400 bad_request
    confirm({"email": email, "code": wrong})  # 400 invalid_code
    confirm({"email": email, "code": wrong})  # 429 too_many_attempts
    other = unique_email()
    register(client, other)
    system.broker.hold.add(system.worker_settings.confirm_email_code_queue)
    confirm({"email": other, "code": system.codes_for(other)[0]})  # 202: no verdict in time
    system.broker.hold.clear()
    system.broker.up = False
    confirm({"email": other, "code": "123456"})  # 503
    system.broker.up = True
    third = unique_email()
    register(client, third)
    confirm({"email": third, "code": system.codes_for(third)[0]})  # 200

    assert set(seen) == {
        (410, "code_expired"),
        (422, "validation_error"),
        (400, "bad_request"),
        (400, "invalid_code"),
        (429, "too_many_attempts"),
        (202, None),
        (503, "service_unavailable"),
        (200, None),
    }
    for response in seen.values():
        assert_not_cached(response)


def test_login_is_never_cached_whatever_its_status(make_system, unique_email):
    system = make_system(limited(login_per_ip="5/hour"))
    client = system.client
    email, pending = unique_email(), unique_email()
    verified(system, email)
    register(client, pending)
    responses = [
        client.post("/auth/login", json={"email": email, "password": PASSWORD}),  # 200
        client.post("/auth/login", json={"email": email, "password": "wrong password"}),  # 401
        client.post("/auth/login", json={"email": pending, "password": PASSWORD}),  # 403
        client.post("/auth/login", json={"email": "not an address", "password": PASSWORD}),  # 422
        client.post("/auth/login", data="nope", content_type="application/json"),  # 400, not counted
        client.post("/auth/login", json={"email": email, "password": PASSWORD}),  # 200, the 5th counted
        client.post("/auth/login", json={"email": email, "password": PASSWORD}),  # 429
    ]
    assert [r.status_code for r in responses] == [200, 401, 403, 422, 400, 200, 429]
    for response in responses:
        assert_not_cached(response)


# --- enumeration ---------------------------------------------------------------


def test_resend_answers_alike_for_known_and_unknown_addresses(system, unique_email):
    known = unique_email()
    register(system.client, known)
    system.cooldown_clock.advance(system.auth_settings.resend_cooldown_seconds)
    answers = []
    for email in [known, unique_email()]:
        response = system.client.post("/auth/resend-code", json={"email": email})
        answers.append((response.status_code, response.json, response.headers.get("Retry-After")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 202


def test_resend_cooldown_applies_to_unknown_addresses_too(system, unique_email):
    known, unknown = unique_email(), unique_email()
    register(system.client, known)
    cooldown = system.auth_settings.resend_cooldown_seconds
    system.cooldown_clock.advance(cooldown)

    def resend(email):
        return system.client.post("/auth/resend-code", json={"email": email})

    first = [resend(known), resend(unknown)]
    assert [r.status_code for r in first] == [202, 202]
    system.cooldown_clock.advance(cooldown - 1)
    inside = [resend(known), resend(unknown)]
    for response in inside:
        assert_contract_error(response, 429, "rate_limited")
        assert response.headers["Retry-After"] == "1"
    assert inside[0].json == inside[1].json
    system.cooldown_clock.advance(1)
    assert [resend(known).status_code, resend(unknown).status_code] == [202, 202]
    assert len(system.codes_for(known)) == 3  # registration + two accepted resends


def test_login_checks_a_dummy_hash_for_an_unknown_address(system, unique_email, monkeypatch):
    """The unknown-address 401 runs one bcrypt check at the configured cost, like a wrong password.

    How long that takes is measured in bench/login_timing.py; here the mechanism is checked.
    """
    email = unique_email()
    verified(system, email)
    checks = []
    real_checkpw = bcrypt.checkpw

    def recording_checkpw(password, hashed):
        checks.append(hashed.split(b"$")[2])
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording_checkpw)
    cost = f"{system.auth_settings.bcrypt_rounds:02d}".encode()

    wrong = system.client.post("/auth/login", json={"email": email, "password": "wrong password"})
    unknown = system.client.post("/auth/login", json={"email": unique_email(), "password": "wrong password"})
    assert (wrong.status_code, wrong.json) == (unknown.status_code, unknown.json)
    assert checks == [cost, cost]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:0", [r"http://127\.0\.0\.1:\d+"]),
        ("127.0.0.1:0 [::1]:0", [r"http://127\.0\.0\.1:\d+", r"http://\[::1\]:\d+"]),
    ],
)
def test_the_server_logs_every_address_it_listens_on(listen, expected):
    """A host name such as localhost may give waitress two sockets, IPv4 and IPv6: each is named."""
    import re

    from waitress.server import create_server

    from auth_service.entrypoints.server import listening_urls

    server = create_server(lambda environ, start_response: [], listen=listen)
    try:
        urls = listening_urls(server)
    finally:
        server.close()
    assert len(urls) == len(expected)
    assert all(re.fullmatch(pattern, url) for pattern, url in zip(expected, urls))
    assert all(not url.endswith(":0") for url in urls)
