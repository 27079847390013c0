"""Refresh tokens, rotation, reuse detection, logout and password change, on fakes (mongomock).

Each rule of the contract's "Tokens" section and of POST /auth/token/refresh,
/auth/logout and /auth/password/change, with the answers' shapes and headers.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from auth_service.domain.errors import InvalidTokenError
from auth_service.domain.sessions import Presented, RefreshRecord, judge_presented, refresh_token_hash
from auth_service.entrypoints.http.ratelimits import account_key
from tests.unit.test_rate_limits import DAY, assert_rate_limited, from_ip, limited

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase 7"
PAIR_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in"}


def sign_up(system, email, password=PASSWORD) -> None:
    client = system.client
    assert client.post("/auth/register", json={"email": email, "password": password}).status_code == 201
    [code] = system.codes_for(email)
    assert client.post("/auth/confirm", json={"email": email, "code": code}).status_code == 200


def login(system, email, password=PASSWORD) -> dict:
    response = system.client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture
def account(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    return {"email": email, **login(system, email)}


def refresh(system, refresh_token, **kwargs):
    return system.client.post("/auth/token/refresh", json={"refresh_token": refresh_token}, **kwargs)


def logout(system, refresh_token):
    return system.client.post("/auth/logout", json={"refresh_token": refresh_token})


def me(system, access_token):
    return system.client.get("/auth/me", headers={"Authorization": f"Bearer {access_token}"})


def change(system, access_token, current=PASSWORD, new=NEW_PASSWORD, **kwargs):
    return system.client.post(
        "/auth/password/change",
        json={"current_password": current, "new_password": new},
        headers={"Authorization": f"Bearer {access_token}"},
        **kwargs,
    )


def assert_pair(response) -> dict:
    assert response.status_code == 200, response.json
    assert set(response.json) == PAIR_FIELDS
    assert response.json["token_type"] == "Bearer"
    assert response.json["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"
    return response.json


def assert_invalid_token(response) -> None:
    assert response.status_code == 401, response.json
    assert response.json["error"] == "invalid_token"
    assert response.json["message"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def switch_threads_often():
    """Let the interpreter switch threads every microsecond, so that a read-then-write that is
    not atomic is interleaved by the other threads (the default 5 ms rarely cuts one short)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def at_once(count: int, action) -> list:
    """Run ``action`` on ``count`` threads released together; returns what each returned."""
    barrier = threading.Barrier(count)
    results = []

    def run():
        barrier.wait()
        results.append(action())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == count
    return results


def database(system):
    return system.auth.users._users.database


def session_of(system, refresh_token) -> dict:
    db = database(system)
    record = db["refresh_tokens"].find_one({"_id": refresh_token_hash(refresh_token)})
    return db["sessions"].find_one({"_id": record["family_id"]})


# --- login and rotation --------------------------------------------------------------------------


def test_login_answers_an_access_and_a_refresh_token(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    pair = assert_pair(system.client.post("/auth/login", json={"email": email, "password": PASSWORD}))
    assert me(system, pair["access_token"]).status_code == 200
    assert len(pair["refresh_token"]) >= 43  # 256 bits, URL-safe base64
    assert pair["refresh_token"] != pair["access_token"]


def test_refresh_tokens_are_stored_only_as_their_sha256(system, account):
    token = account["refresh_token"]
    db = database(system)
    [record] = db["refresh_tokens"].find({})
    assert record["_id"] == hashlib.sha256(token.encode()).hexdigest()
    stored = repr(list(db["refresh_tokens"].find({}))) + repr(list(db["sessions"].find({})))
    stored += repr(list(db["users"].find({})))
    assert token not in stored and account["access_token"] not in stored


def test_refresh_rotates_the_pair_and_the_new_refresh_token_works(system, account):
    first = assert_pair(refresh(system, account["refresh_token"]))
    assert first["refresh_token"] != account["refresh_token"]
    assert me(system, first["access_token"]).status_code == 200
    second = assert_pair(refresh(system, first["refresh_token"]))
    assert second["refresh_token"] not in (first["refresh_token"], account["refresh_token"])
    # One session from the login on, whatever the number of rotations.
    assert session_of(system, second["refresh_token"])["_id"] == session_of(system, account["refresh_token"])["_id"]


def test_a_used_token_within_the_grace_window_is_answered_with_a_pair_of_the_same_session(system, account):
    rotated = assert_pair(refresh(system, account["refresh_token"]))
    system.clock.advance(system.auth_settings.refresh_reuse_grace_seconds - 1)
    retried = assert_pair(refresh(system, account["refresh_token"]))
    assert retried["refresh_token"] != rotated["refresh_token"]
    assert session_of(system, retried["refresh_token"])["_id"] == session_of(system, rotated["refresh_token"])["_id"]
    # Both answers stay usable: the client that lost the first answer goes on with the second.
    assert_pair(refresh(system, retried["refresh_token"]))
    assert_pair(refresh(system, rotated["refresh_token"]))


def test_a_used_token_after_the_grace_window_is_refused_and_ends_the_whole_session(system, account):
    other_device = login(system, account["email"])
    rotated = assert_pair(refresh(system, account["refresh_token"]))
    newest = assert_pair(refresh(system, rotated["refresh_token"]))
    system.clock.advance(system.auth_settings.refresh_reuse_grace_seconds)

    assert_invalid_token(refresh(system, account["refresh_token"]))
    assert session_of(system, newest["refresh_token"])["ended_reason"] == "reuse_detected"
    # Every token that descends from that login is refused now, the thief's and the owner's alike...
    assert_invalid_token(refresh(system, newest["refresh_token"]))
    # ...and another login of the same account is left alone.
    assert_pair(refresh(system, other_device["refresh_token"]))


def test_the_grace_window_counts_from_the_first_use_and_retries_do_not_stretch_it(system, account):
    grace = system.auth_settings.refresh_reuse_grace_seconds
    assert_pair(refresh(system, account["refresh_token"]))
    for _ in range(3):
        system.clock.advance(grace / 4)
        assert_pair(refresh(system, account["refresh_token"]))
    system.clock.advance(grace / 4)  # now exactly `grace` after the first use
    assert_invalid_token(refresh(system, account["refresh_token"]))


def test_without_a_grace_window_any_second_use_ends_the_session(make_system, unique_email):
    system = make_system({"REFRESH_REUSE_GRACE_SECONDS": "0"})
    email = unique_email()
    sign_up(system, email)
    pair = login(system, email)
    rotated = assert_pair(refresh(system, pair["refresh_token"]))
    assert_invalid_token(refresh(system, pair["refresh_token"]))
    assert_invalid_token(refresh(system, rotated["refresh_token"]))


def test_parallel_refreshes_of_one_token_rotate_it_exactly_once_outside_the_grace_window(
    make_system, unique_email, switch_threads_often
):
    """Eight requests on eight threads at once, on the request path used in production (the
    lock mongomock needs stands in for the server's atomic single-document findAndModify).

    Without a grace window the seven that lose are reuse, and end the session. The one that
    won the rotation is answered if it finished before that, else refused with the rest:
    either way no token of that session works afterwards."""
    system = make_system({"REFRESH_REUSE_GRACE_SECONDS": "0"})
    email = unique_email()
    sign_up(system, email)
    token = login(system, email)["refresh_token"]
    store = system.auth.sessions._sessions
    real_claim = store.claim
    rotations = []

    def counted_claim(token_hash, now):
        claimed = real_claim(token_hash, now)
        if claimed is not None:
            rotations.append(claimed)
        return claimed

    store.claim = counted_claim
    threads_count = 8
    answers = at_once(threads_count, lambda: refresh(system, token))

    assert len(rotations) == 1
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses in ([200] + [401] * (threads_count - 1), [401] * threads_count)
    assert session_of(system, token)["ended_reason"] == "reuse_detected"
    for answer in answers:
        if answer.status_code == 200:
            assert_invalid_token(refresh(system, answer.json["refresh_token"]))
        else:
            assert_invalid_token(answer)


def test_parallel_claims_of_one_token_in_the_store_give_it_to_exactly_one(system, account, switch_threads_often):
    """Twenty tokens, each claimed by sixteen threads at once: one claim wins per token."""
    store = system.auth.sessions._sessions
    user = system.auth.users.by_email(account["email"])
    threads_count, rounds = 16, 20
    for _ in range(rounds):
        token_hash = refresh_token_hash(login(system, account["email"])["refresh_token"])
        now = datetime.fromtimestamp(system.clock(), UTC)
        claimed = at_once(threads_count, lambda token_hash=token_hash, now=now: store.claim(token_hash, now))
        winners = [record for record in claimed if record is not None]
        assert len(winners) == 1 and winners[0].user_id == user.id


def test_parallel_refreshes_within_the_grace_window_are_all_answered_and_spend_the_token_once(system, account):
    token = account["refresh_token"]
    threads_count = 6
    answers = at_once(threads_count, lambda: refresh(system, token))
    assert [answer.status_code for answer in answers] == [200] * threads_count
    assert len({answer.json["refresh_token"] for answer in answers}) == threads_count
    record = database(system)["refresh_tokens"].find_one({"_id": refresh_token_hash(token)})
    assert record["used_at"] is not None


def test_a_refresh_token_expires_after_its_lifetime_and_each_rotation_starts_a_new_one(make_system, unique_email):
    system = make_system({"REFRESH_TTL_SECONDS": "60"})
    email = unique_email()
    sign_up(system, email)
    pair = login(system, email)
    system.clock.advance(50)
    rotated = assert_pair(refresh(system, pair["refresh_token"]))
    system.clock.advance(50)  # 100 s after the login, 50 s after the rotation
    rotated = assert_pair(refresh(system, rotated["refresh_token"]))
    system.clock.advance(61)
    assert_invalid_token(refresh(system, rotated["refresh_token"]))


@pytest.mark.parametrize("token", ["x", "not-a-token-of-ours", "A" * 43, "é" * 200])
def test_an_unknown_refresh_token_is_invalid_token(system, token):
    assert_invalid_token(refresh(system, token))


def test_an_access_token_is_no_refresh_token(system, account):
    assert_invalid_token(refresh(system, account["access_token"]))


@pytest.mark.parametrize("path", ["/auth/token/refresh", "/auth/logout"])
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"refresh_token": ""},
        {"refresh_token": None},
        {"refresh_token": 12},
        {"refresh_token": "x" * 513},
        {"refresh_token": "x", "extra": 1},
        {"refresh_token": "\ud800"},
    ],
)
def test_a_malformed_refresh_or_logout_body_is_422(system, path, body):
    response = system.client.post(path, json=body)
    assert response.status_code == 422, response.json
    assert response.json["error"] == "validation_error"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/auth/token/refresh", "/auth/logout", "/auth/password/change"])
def test_a_body_that_is_not_a_json_object_is_400(system, path):
    response = system.client.post(path, data="[1]", content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"


# --- logout ----------------------------------------------------------------------------------------


def test_logout_ends_the_session_of_the_token(system, account):
    other_device = login(system, account["email"])
    rotated = assert_pair(refresh(system, account["refresh_token"]))
    response = logout(system, rotated["refresh_token"])
    assert response.status_code == 204
    assert response.data == b""
    assert response.headers["Cache-Control"] == "no-store"
    assert_invalid_token(refresh(system, rotated["refresh_token"]))
    assert session_of(system, rotated["refresh_token"])["ended_reason"] == "logout"
    assert_pair(refresh(system, other_device["refresh_token"]))


def test_logout_with_a_used_token_of_the_session_ends_it_too(system, account):
    rotated = assert_pair(refresh(system, account["refresh_token"]))
    assert logout(system, account["refresh_token"]).status_code == 204
    assert_invalid_token(refresh(system, rotated["refresh_token"]))


def test_logout_answers_204_for_an_unknown_or_already_ended_token(system, account):
    assert logout(system, "no-such-token").status_code == 204
    assert logout(system, account["refresh_token"]).status_code == 204
    assert logout(system, account["refresh_token"]).status_code == 204


def test_logout_refuses_the_sessions_access_token_at_once_and_no_other(system, account):
    """The session-end cache (tests/unit/test_session_ends.py has the rest)."""
    other_device = login(system, account["email"])
    assert logout(system, account["refresh_token"]).status_code == 204
    assert_invalid_token(me(system, account["access_token"]))
    assert me(system, other_device["access_token"]).status_code == 200


# --- password change ---------------------------------------------------------------------------------


def test_password_change_answers_a_new_pair_and_refuses_every_other_token(system, account):
    other_device = login(system, account["email"])
    rotated_elsewhere = assert_pair(refresh(system, other_device["refresh_token"]))

    new_pair = assert_pair(change(system, account["access_token"]))

    for old_access in (account["access_token"], other_device["access_token"], rotated_elsewhere["access_token"]):
        assert_invalid_token(me(system, old_access))
    for old_refresh in (account["refresh_token"], rotated_elsewhere["refresh_token"]):
        assert_invalid_token(refresh(system, old_refresh))
    assert_invalid_token(change(system, account["access_token"], current=NEW_PASSWORD, new=PASSWORD))

    assert me(system, new_pair["access_token"]).json["email"] == account["email"]
    rotated = assert_pair(refresh(system, new_pair["refresh_token"]))
    assert me(system, rotated["access_token"]).status_code == 200


def test_after_a_change_only_the_new_password_logs_in(system, account):
    assert_pair(change(system, account["access_token"]))
    response = system.client.post("/auth/login", json={"email": account["email"], "password": PASSWORD})
    assert response.status_code == 401
    assert_pair(system.client.post("/auth/login", json={"email": account["email"], "password": NEW_PASSWORD}))


def test_a_wrong_current_password_is_401_invalid_credentials_and_changes_nothing(system, account):
    response = change(system, account["access_token"], current="not the password")
    assert response.status_code == 401
    assert response.json["error"] == "invalid_credentials"
    assert response.headers["Cache-Control"] == "no-store"
    assert me(system, account["access_token"]).status_code == 200
    assert_pair(refresh(system, account["refresh_token"]))
    login(system, account["email"], PASSWORD)


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_password_change_without_a_valid_bearer_token_is_invalid_token(system, account, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert_invalid_token(system.client.post("/auth/password/change", json=body, headers=headers))
    login(system, account["email"], PASSWORD)


def test_a_refresh_token_is_no_bearer_token(system, account):
    assert_invalid_token(change(system, account["refresh_token"]))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"current_password": PASSWORD, "new_password": "short"}, "new_password"),
        ({"current_password": PASSWORD, "new_password": "é" * 37}, "new_password"),  # 74 bytes
        ({"current_password": PASSWORD, "new_password": "password123"}, "new_password"),  # common
        ({"current_password": PASSWORD, "new_password": PASSWORD}, "new_password"),  # unchanged
        ({"new_password": NEW_PASSWORD}, "current_password"),
        ({"current_password": PASSWORD}, "new_password"),
        ({"current_password": "", "new_password": NEW_PASSWORD}, "current_password"),
        ({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "name": "x"}, "name"),
    ],
)
def test_password_change_validation_is_422_on_the_field(system, account, body, field):
    response = system.client.post(
        "/auth/password/change", json=body, headers={"Authorization": f"Bearer {account['access_token']}"}
    )
    assert response.status_code == 422, response.json
    assert response.json["error"] == "validation_error"
    assert field in response.json["fields"]
    assert me(system, account["access_token"]).status_code == 200


def test_access_tokens_carry_the_accounts_token_version(system, account):
    claims = jwt.decode(account["access_token"], options={"verify_signature": False})
    assert claims["ver"] == 0
    new_pair = assert_pair(change(system, account["access_token"]))
    assert jwt.decode(new_pair["access_token"], options={"verify_signature": False})["ver"] == 1


def test_an_account_stored_before_token_versions_existed_works_and_can_change_its_password(system, account):
    users = database(system)["users"]
    users.update_one({"email": account["email"]}, {"$unset": {"token_version": ""}})
    pair = login(system, account["email"])
    assert me(system, pair["access_token"]).status_code == 200
    new_pair = assert_pair(change(system, pair["access_token"]))
    assert_invalid_token(me(system, pair["access_token"]))
    assert me(system, new_pair["access_token"]).status_code == 200


# --- the service-level revocation that password reset uses ------------------------------------------


def test_revoke_all_sessions_refuses_every_token_of_the_account_only(system, account, unique_email):
    bystander_email = unique_email()
    sign_up(system, bystander_email)
    bystander = login(system, bystander_email)
    user = system.auth.users.by_email(account["email"])

    updated = system.auth.sessions.revoke_all_sessions(user.id, "not_me")

    assert updated.token_version == user.token_version + 1
    assert_invalid_token(me(system, account["access_token"]))
    assert_invalid_token(refresh(system, account["refresh_token"]))
    assert session_of(system, account["refresh_token"])["ended_reason"] == "not_me"
    assert me(system, bystander["access_token"]).status_code == 200
    assert_pair(refresh(system, bystander["refresh_token"]))
    login(system, account["email"], PASSWORD)  # the password is kept


def test_set_password_writes_the_hash_and_refuses_earlier_tokens_in_one_update(system, account):
    user = system.auth.users.by_email(account["email"])
    updated = system.auth.sessions.set_password(user.id, NEW_PASSWORD, "password_reset")
    assert updated.token_version == user.token_version + 1
    assert updated.password_hash != user.password_hash
    assert_invalid_token(me(system, account["access_token"]))
    assert_invalid_token(refresh(system, account["refresh_token"]))
    login(system, account["email"], NEW_PASSWORD)
    assert system.auth.sessions.set_password("no-such-user", NEW_PASSWORD, "password_reset") is None


def test_a_refresh_racing_a_password_change_yields_no_token_that_survives_it(system, account):
    """The change lands between the refresh's claim and its successor: the successor carries the
    version of the token it replaces, so it is refused like every other earlier token."""
    sessions = system.auth.sessions
    store = sessions._sessions
    user = system.auth.users.by_email(account["email"])
    real_claim = store.claim

    def claim_then_change(token_hash, now):
        claimed = real_claim(token_hash, now)
        sessions.set_password(user.id, NEW_PASSWORD, "password_changed")
        return claimed

    store.claim = claim_then_change
    try:
        with pytest.raises(InvalidTokenError):
            sessions.refresh(account["refresh_token"])
    finally:
        store.claim = real_claim


def test_a_second_change_with_the_same_token_is_refused(system, account):
    assert_pair(change(system, account["access_token"]))
    assert_invalid_token(change(system, account["access_token"], current=NEW_PASSWORD, new="yet another passphrase"))


# --- the pure rule -------------------------------------------------------------------------------------


def _record(used_seconds_ago: float | None, expires_in: float = 3600) -> RefreshRecord:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return RefreshRecord(
        token_hash="h",
        family_id="f",
        user_id="u",
        token_version=0,
        issued_at=now - timedelta(hours=1),
        expires_at=now + timedelta(seconds=expires_in),
        used_at=None if used_seconds_ago is None else now - timedelta(seconds=used_seconds_ago),
    )


@pytest.mark.parametrize(
    ("record", "verdict"),
    [
        (None, Presented.UNKNOWN),
        (_record(used_seconds_ago=3, expires_in=0), Presented.EXPIRED),
        (_record(used_seconds_ago=0), Presented.RETRY_WITHIN_GRACE),
        (_record(used_seconds_ago=9.9), Presented.RETRY_WITHIN_GRACE),
        (_record(used_seconds_ago=10), Presented.REUSED),
        (_record(used_seconds_ago=3600), Presented.REUSED),
    ],
)
def test_judge_presented(record, verdict):
    assert judge_presented(record, datetime(2030, 1, 1, tzinfo=UTC), timedelta(seconds=10)) is verdict


# --- storage and rate limits -----------------------------------------------------------------------------


def test_both_collections_have_a_ttl_index_on_their_expiry(system, account):
    for name in ("refresh_tokens", "sessions"):
        indexes = database(system)[name].index_information()
        assert indexes["expires_ttl"]["expireAfterSeconds"] == 0
        assert indexes["expires_ttl"]["key"] == [("expires_at", 1)]


def test_refresh_per_ip_and_per_token_limits(make_system, unique_email):
    system = make_system(limited(refresh_per_ip="3/hour", refresh_per_token="2/minute"))
    for n in range(3):
        assert refresh(system, f"unknown-{n}", environ_base=from_ip("198.51.100.1")).status_code == 401
    assert_rate_limited(refresh(system, "other", environ_base=from_ip("198.51.100.1")))
    for n in range(2):
        assert refresh(system, "hammered", environ_base=from_ip(f"203.0.113.{n}")).status_code == 401
    assert_rate_limited(refresh(system, "hammered", environ_base=from_ip("203.0.113.9")), 60)


def test_logout_per_ip_and_per_token_limits(make_system):
    system = make_system(limited(logout_per_ip="3/hour", logout_per_token="2/minute"))
    ip = from_ip("198.51.100.1")
    for n in range(3):
        assert system.client.post("/auth/logout", json={"refresh_token": f"x{n}"}, environ_base=ip).status_code == 204
    assert_rate_limited(system.client.post("/auth/logout", json={"refresh_token": "y"}, environ_base=ip))
    for n in range(2):
        other = from_ip(f"203.0.113.{n}")
        assert system.client.post("/auth/logout", json={"refresh_token": "z"}, environ_base=other).status_code == 204
    refused = system.client.post("/auth/logout", json={"refresh_token": "z"}, environ_base=from_ip("203.0.113.9"))
    assert_rate_limited(refused, 60)


def test_password_change_per_ip_limit(make_system, unique_email):
    system = make_system(limited(password_change_per_ip="2/hour"))
    for _ in range(2):
        assert_invalid_token(change(system, "forged", environ_base=from_ip("198.51.100.1")))
    assert_rate_limited(change(system, "forged", environ_base=from_ip("198.51.100.1")))


def test_password_change_per_account_limit_counts_wrong_current_passwords_only(make_system, unique_email):
    system = make_system(limited(password_change_failures_per_account="2/day"))
    email = unique_email()
    sign_up(system, email)
    pair = login(system, email)
    for n in range(2):
        wrong = change(system, pair["access_token"], current="wrong password", environ_base=from_ip(f"203.0.113.{n}"))
        assert wrong.status_code == 401
    assert_rate_limited(change(system, pair["access_token"], environ_base=from_ip("203.0.113.50")), DAY)
    # Another account from the same address is not held back.
    other = unique_email()
    sign_up(system, other)
    assert_pair(change(system, login(system, other)["access_token"], environ_base=from_ip("203.0.113.50")))


def test_a_forged_bearer_token_spends_no_accounts_budget(system, account):
    claims = jwt.decode(account["access_token"], options={"verify_signature": False})
    forged = jwt.encode(claims, "an attacker's key that is long enough 0123", algorithm="HS256")
    with system.auth.app.test_request_context(headers={"Authorization": f"Bearer {forged}"}):
        forged_key = account_key()
    with system.auth.app.test_request_context(headers={"Authorization": f"Bearer {account['access_token']}"}):
        real_key = account_key()
    assert forged_key != real_key
    assert claims["sub"] not in real_key
