"""Every row of the contract's HTTP table, on fakes."""

from __future__ import annotations

import re
import threading
import time

import jwt
import pytest

from auth_service.domain.signing_keys import generate_key

PASSWORD = "correct horse battery"


def register(client, email, password=PASSWORD, **extra):
    return client.post("/auth/register", json={"email": email, "password": password, **extra})


def confirm(client, email, code):
    return client.post("/auth/confirm", json={"email": email, "code": code})


def wrong_code(right: str) -> str:
    return f"{(int(right) + 1) % 1_000_000:06d}"


def assert_error(response, status: int, error: str):
    assert response.status_code == status, response.json
    assert response.json["error"] == error
    assert isinstance(response.json["message"], str) and response.json["message"]


def verified_user(system, email):
    register(system.client, email)
    [code] = system.codes_for(email)
    assert confirm(system.client, email, code).status_code == 200


def token_for(system, email):
    verified_user(system, email)
    return system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).json["access_token"]


# --- register -------------------------------------------------------------------------------


def test_register_trims_and_lowercases_the_address(system, unique_email):
    email = unique_email()
    response = register(system.client, f"  {email.upper()} ")
    assert response.status_code == 201
    assert response.json["email"] == email


def test_register_publishes_no_password(system, unique_email):
    email = unique_email()
    register(system.client, email, password="a secret passphrase 1")
    [message] = system.broker.sent_to(system.auth_settings.account_creation_queue)
    assert message.body["email"] == email
    assert set(message.body) == {
        "purpose",
        "user_id",
        "email",
        "name",
        "requested_at",
        "sequence",
        "registered_at",
        "locale",
    }
    assert "a secret passphrase 1" not in message.encoded_body().decode()


def test_registering_a_confirmed_address_is_409_also_when_the_case_differs(system, unique_email):
    email = unique_email()
    verified_user(system, email)
    assert_error(register(system.client, email.upper()), 409, "email_taken")


def register_in_parallel(system, email, passwords):
    answers = []
    barrier = threading.Barrier(len(passwords))

    def attempt(password):
        client = system.auth.app.test_client()
        barrier.wait()
        answers.append(register(client, email, password=password))

    threads = [threading.Thread(target=attempt, args=(password,)) for password in passwords]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_parallel_registrations_of_one_address_make_one_account_that_one_password_opens(make_system, unique_email):
    # Quotas high enough for every registration's code: which ones the default would refuse depends on timing.
    system = make_system({"MAX_CODES_PER_HOUR": "50", "MAX_CODES_PER_DAY": "50"})
    email = unique_email()
    passwords = [f"parallel registrant number {index}" for index in range(10)]
    answers = register_in_parallel(system, email, passwords)
    assert [answer.status_code for answer in answers] == [201] * 10
    # Each takeover gives the account a new id; one account stands at the end.
    assert len({answer.json["id"] for answer in answers}) == 10
    assert system.auth.users._users.count_documents({"email": email}) == 1
    sequences = [m.body["sequence"] for m in system.broker.sent_to(system.auth_settings.account_creation_queue)]
    assert len(set(sequences)) == 10

    assert confirm(system.client, email, system.codes_for(email)[-1]).status_code == 200
    logins = [system.client.post("/auth/login", json={"email": email, "password": p}) for p in passwords]
    assert sorted(response.status_code for response in logins) == [200] + [401] * 9


def test_parallel_registrations_of_a_confirmed_address_are_all_409(system, unique_email):
    email = unique_email()
    verified_user(system, email)
    answers = register_in_parallel(system, email, [f"another password {index}" for index in range(10)])
    assert [answer.status_code for answer in answers] == [409] * 10


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address", "password": PASSWORD}, "email"),
        ({"password": PASSWORD}, "email"),
        ({"email": "a@example.com"}, "password"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "x" * 73}, "password"),
        ({"email": "a@example.com", "password": "é" * 37}, "password"),  # 74 bytes in UTF-8
        ({"email": "a@example.com", "password": 12345678}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "n" * 101}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "role": "admin"}, "role"),
    ],
)
def test_register_rejects_invalid_fields_with_422(system, body, field):
    response = system.client.post("/auth/register", json=body)
    assert_error(response, 422, "validation_error")
    assert field in response.json["fields"]


def test_password_of_exactly_72_bytes_is_accepted(system, unique_email):
    password = "correct horse battery staple, with é and ü: " + "x" * 26
    assert len(password.encode()) == 72
    assert register(system.client, unique_email(), password=password).status_code == 201


@pytest.mark.parametrize(
    "payload",
    [
        {"data": b"[1, 2]", "content_type": "application/json"},
        {"data": b'"text"', "content_type": "application/json"},
        {"data": b"{not json", "content_type": "application/json"},
        {"data": b"email=a@example.com", "content_type": "application/x-www-form-urlencoded"},
        {"data": b"", "content_type": "application/json"},
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(system, payload):
    for path in ("/auth/register", "/auth/confirm", "/auth/resend-code", "/auth/login"):
        assert_error(system.client.post(path, **payload), 400, "bad_request")


# --- confirm --------------------------------------------------------------------------------


def test_a_wrong_code_is_400_with_attempts_left_then_burned_after_the_last(system, unique_email):
    email = unique_email()
    register(system.client, email)
    [code] = system.codes_for(email)
    for left in (4, 3, 2, 1):
        response = confirm(system.client, email, wrong_code(code))
        assert_error(response, 400, "invalid_code")
        assert response.json["attempts_left"] == left
    assert_error(confirm(system.client, email, wrong_code(code)), 429, "too_many_attempts")
    assert_error(confirm(system.client, email, code), 429, "too_many_attempts")


def test_a_code_is_accepted_once_and_confirming_again_stays_verified(system, unique_email):
    email = unique_email()
    register(system.client, email)
    [code] = system.codes_for(email)
    assert confirm(system.client, email, code).status_code == 200
    again = confirm(system.client, email, code)
    assert again.status_code == 200
    assert again.json["status"] == "verified"


def test_an_expired_code_is_410(make_system, unique_email):
    system = make_system({"CODE_TTL_SECONDS": "1"})
    email = unique_email()
    register(system.client, email)
    [code] = system.codes_for(email)
    system.redis.flushall()  # what Redis does when the TTL runs out
    assert_error(confirm(system.client, email, code), 410, "code_expired")


def test_confirm_for_an_unknown_address_is_410(system, unique_email):
    assert_error(confirm(system.client, unique_email(), "123456"), 410, "code_expired")


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "", 123456, None])
def test_confirm_rejects_a_malformed_code_with_422(system, code):
    response = system.client.post("/auth/confirm", json={"email": "a@example.com", "code": code})
    assert_error(response, 422, "validation_error")
    assert "code" in response.json["fields"]


def test_confirm_without_a_verdict_in_time_is_202_and_the_account_ends_verified(system, unique_email):
    email = unique_email()
    register(system.client, email)
    [code] = system.codes_for(email)
    system.broker.hold.add(system.worker_settings.confirm_email_code_queue)

    response = confirm(system.client, email, code)
    assert response.status_code == 202
    assert response.json["status"] == "pending_verification"

    system.broker.release(system.worker_settings.confirm_email_code_queue)
    login = system.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200


def test_confirm_while_the_broker_is_down_is_503_with_retry_after(system, unique_email):
    email = unique_email()
    register(system.client, email)
    system.broker.up = False
    response = confirm(system.client, email, "123456")
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["Retry-After"]) > 0


def test_the_submitted_code_reaches_the_worker_with_reply_to_and_correlation_id(system, unique_email):
    email = unique_email()
    register(system.client, email)
    [code] = system.codes_for(email)
    confirm(system.client, email, code)
    [submission] = system.broker.sent_to(system.worker_settings.confirm_email_code_queue)
    assert submission.reply_to and submission.correlation_id
    assert submission.body["code"] == code


# --- resend ---------------------------------------------------------------------------------


def test_resend_sends_a_new_code_that_replaces_the_old_one(system, unique_email):
    email = unique_email()
    register(system.client, email)
    system.cooldown_clock.advance(61)
    assert system.client.post("/auth/resend-code", json={"email": email}).status_code == 202
    old, new = system.codes_for(email)
    if old != new:
        assert_error(confirm(system.client, email, old), 400, "invalid_code")
    assert confirm(system.client, email, new).status_code == 200


def test_resend_inside_the_cooldown_is_429_with_retry_after(system, unique_email):
    email = unique_email()
    register(system.client, email)
    system.cooldown_clock.advance(20)
    response = system.client.post("/auth/resend-code", json={"email": email})
    assert_error(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "40"


def test_resend_answers_alike_for_unknown_addresses(system, unique_email):
    unknown = unique_email()
    first = system.client.post("/auth/resend-code", json={"email": unknown})
    assert first.status_code == 202
    assert_error(system.client.post("/auth/resend-code", json={"email": unknown}), 429, "rate_limited")
    assert system.broker.deliveries == []


def test_resend_rejects_a_bad_address_with_422(system):
    assert_error(system.client.post("/auth/resend-code", json={"email": "nope"}), 422, "validation_error")


# --- login and me ---------------------------------------------------------------------------


def test_login_unknown_address_and_wrong_password_are_the_same_401(system, unique_email):
    email = unique_email()
    verified_user(system, email)
    unknown = system.client.post("/auth/login", json={"email": unique_email(), "password": PASSWORD})
    wrong = system.client.post("/auth/login", json={"email": email, "password": "not the password"})
    assert_error(unknown, 401, "invalid_credentials")
    assert unknown.json == wrong.json


def test_login_before_confirming_is_403(system, unique_email):
    email = unique_email()
    register(system.client, email)
    response = system.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert_error(response, 403, "email_not_verified")


def test_login_token_carries_the_required_claims(system, unique_email):
    email = unique_email()
    token = token_for(system, email)
    settings = system.auth_settings
    key = system.auth.keys.current().verifying[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.verifier, algorithms=["ES256"], audience=settings.jwt_audience)
    assert set(claims) == {"sub", "sid", "iat", "exp", "iss", "aud", "jti", "ver"}
    assert claims["ver"] == 0
    assert claims["exp"] - claims["iat"] == settings.jwt_ttl_seconds
    assert claims["iss"] == settings.jwt_issuer


def _forged(system, **changes) -> str:
    settings = system.auth_settings
    now = int(time.time())
    claims = {
        "sub": "x",
        "iat": now,
        "exp": now + 60,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sid": "a-session",
        "jti": "a-token",
        "ver": 0,
    }
    claims.update(changes.pop("claims", {}))
    claims = {name: value for name, value in claims.items() if value is not None}
    signing = system.auth.keys.current().signing
    key = changes.pop("key", signing.signer)
    return jwt.encode(claims, key, algorithm=changes.pop("algorithm", signing.alg), headers={"kid": signing.kid})


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer not.a.token",
        "Basic dXNlcjpwYXNz",
        "Bearer {expired}",
        "Bearer {wrong_key}",
        "Bearer {alg_none}",
        "Bearer {no_exp}",
        "Bearer {wrong_audience}",
    ],
)
def test_me_rejects_every_bad_token_with_401(system, unique_email, header):
    email = unique_email()
    user_id = register(system.client, email).json["id"]
    tokens = {
        "expired": _forged(system, claims={"sub": user_id, "iat": 1, "exp": 2}),
        "wrong_key": _forged(system, claims={"sub": user_id}, key=generate_key("ES256").signer),
        "alg_none": _forged(system, claims={"sub": user_id}, key=None, algorithm="none"),
        "no_exp": _forged(system, claims={"sub": user_id, "exp": None}),
        "wrong_audience": _forged(system, claims={"sub": user_id, "aud": "someone-else"}),
    }
    headers = {"Authorization": header.format(**tokens)} if header else {}
    assert_error(system.client.get("/auth/me", headers=headers), 401, "invalid_token")


def test_me_returns_the_profile(system, unique_email):
    email = unique_email()
    token = token_for(system, email)
    me = system.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert set(me.json) == {"id", "email", "name", "status", "created_at", "locale", "email_deliverable"}
    assert me.json["email_deliverable"] is True


# --- health and docs ------------------------------------------------------------------------


def test_healthz_and_readyz(system):
    assert system.client.get("/healthz").status_code == 200
    ready = system.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"mongodb": "up", "rabbitmq": "up"}


def test_readyz_names_what_is_down(system):
    system.broker.up = False
    ready = system.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["rabbitmq"] == "down"


def test_openapi_document_lists_every_endpoint(system):
    document = system.client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert {"/auth/register", "/auth/confirm", "/auth/resend-code", "/auth/login", "/auth/me"} <= set(document["paths"])
    assert {"/healthz", "/readyz", "/.well-known/jwks.json"} <= set(document["paths"])


def test_unknown_route_and_wrong_method_get_the_error_body(system):
    assert_error(system.client.get("/nope"), 404, "not_found")
    assert_error(system.client.get("/auth/register"), 405, "method_not_allowed")


def test_an_unreachable_database_is_503_not_500(system, unique_email, monkeypatch):
    import pymongo.errors

    def unreachable(*args, **kwargs):
        raise pymongo.errors.ServerSelectionTimeoutError("no servers")

    monkeypatch.setattr(system.auth.users, "by_email", unreachable)
    response = system.client.post("/auth/login", json={"email": unique_email(), "password": PASSWORD})
    assert_error(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"email": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_a_body_nested_too_deeply_is_400_not_500(system, body):
    for path in ("/auth/register", "/auth/login"):
        response = system.client.post(path, data=body, content_type="application/json")
        assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("email", ["a@ex\ud800ample.com", "j\u00f6hn@example.com", "\ud800@example.com"])
def test_an_address_that_cannot_be_mailed_is_422(system, email):
    for path, extra in (
        ("/auth/register", {"password": PASSWORD}),
        ("/auth/resend-code", {}),
        ("/auth/login", {"password": PASSWORD}),
    ):
        response = system.client.post(path, json={"email": email, **extra})
        assert_error(response, 422, "validation_error")
        assert "email" in response.json["fields"]


@pytest.mark.parametrize(
    "code", ["\uff11\uff12\uff13\uff14\uff15\uff16", "\u0661\u0662\u0663\u0664\u0665\u0666", "123456\n"]
)
def test_a_code_of_other_digits_is_422_and_spends_no_attempt(system, unique_email, code):
    email = unique_email()
    register(system.client, email)
    assert_error(confirm(system.client, email, code), 422, "validation_error")
    [real] = system.codes_for(email)
    assert confirm(system.client, email, wrong_code(real)).json["attempts_left"] == 4


@pytest.mark.parametrize("name", ["Ada\nBcc: x@example.com", "visit https://evil.example", "tab\there"])
def test_a_name_with_control_characters_or_links_is_422(system, unique_email, name):
    response = register(system.client, unique_email(), name=name)
    assert_error(response, 422, "validation_error")
    assert "name" in response.json["fields"]


def test_confirm_answers_without_the_account_id(system, unique_email):
    email = unique_email()
    register(system.client, email)
    [code] = system.codes_for(email)
    assert confirm(system.client, email, code).json == {"email": email, "status": "verified"}
    assert confirm(system.client, email, code).json == {"email": email, "status": "verified"}


def test_guesses_that_waited_in_the_queue_do_not_burn_a_newer_code(system, unique_email):
    email = unique_email()
    register(system.client, email)
    [old] = system.codes_for(email)
    queue = system.worker_settings.confirm_email_code_queue
    system.broker.hold.add(queue)
    for _ in range(5):
        assert confirm(system.client, email, wrong_code(old)).status_code == 202
    system.cooldown_clock.advance(61)
    system.clock.advance(61)
    assert system.client.post("/auth/resend-code", json={"email": email}).status_code == 202
    system.broker.release(queue)
    new = system.codes_for(email)[-1]
    assert confirm(system.client, email, new).status_code == 200


def test_openapi_document_lists_every_route_the_api_serves(system):
    """Every route of the public API is documented: a client generated from /openapi.json misses none."""
    document = system.client.get("/openapi.json").json
    documented = {re.sub(r"\{(\w+)\}", r"<\1>", path) for path in document["paths"]}
    served = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)
        for rule in system.auth.app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    # The document itself, its reader and Prometheus's scrape are the operators', not the API's.
    tooling = {"/openapi.json", "/docs", "/docs/swagger-ui/<filename>", "/metrics"}
    assert sorted(served - documented - tooling) == []
    assert {"/webhooks/mail/postmark", "/webhooks/mail/ses"} <= documented
