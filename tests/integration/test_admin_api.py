"""The admin API on the real auth process: its own port, admin keys from ADMIN_KEYS_FILE, scopes, the audit.

Keys are made and revoked with ``python -m auth_service admin-keys``, as an
operator does, against the file the running service reads.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from devtools.stack import http_json
from email_service.adapters.suppressions import REFRESH_SECONDS, RedisSuppressions
from tests.integration.test_contract_flow import PASSWORD, confirm, emailed_codes, login, new_email, register
from tests.waiting import eventually

ALL_SCOPES = "users:read,users:write,sessions:write,introspect,webhooks:write,audit:read"


def admin_keys(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "auth_service", "admin-keys", *args],
        env={**stack.env, **stack.auth.overrides},
        capture_output=True,
        text=True,
        timeout=60,
    )


def create_key(stack, name: str, scopes: str) -> str:
    made = admin_keys(stack, "create", "--name", name, "--scopes", scopes)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert re.fullmatch(r"ak_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key)
    return key


@pytest.fixture(scope="module")
def admin_stack(start_module_stack, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("admin") / "admin-keys"
    # The default resend cooldown (60 s): support's resends and resets are not held by it.
    return start_module_stack(ADMIN_KEYS_FILE=str(keys_file))


def operations(stack) -> list[tuple[str, str]]:
    status, _, document = http_json("GET", f"{stack.admin_url}/admin/openapi.json")
    assert status == 200
    found = []
    for path, item in document["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "0123456789abcdef0123456789abcdef", path)
        found += [(method.upper(), concrete) for method in item if method in ("get", "post", "delete", "put", "patch")]
    return found


def test_every_admin_path_answers_on_the_admin_port_only(admin_stack):
    stack = admin_stack
    found = operations(stack)
    assert ("GET", "/admin/audit") in found
    for method, path in [*found, ("GET", "/admin/openapi.json")]:
        public = stack.call(method, path)
        assert public[0] in (404, 405), (method, path, public)
        assert public[2]["error"] in ("not_found", "method_not_allowed")
    for method, path in found:
        status, headers, body = stack.admin_call(method, path, None)
        assert (status, body["error"]) == (401, "invalid_token"), (method, path, body)
        assert headers["Cache-Control"] == "no-store"
    # Nothing of the public API answers on the admin port either.
    assert http_json("GET", f"{stack.admin_url}/auth/me")[0] == 404
    assert http_json("GET", f"{stack.admin_url}/openapi.json")[0] == 404


def test_a_key_is_checked_for_its_scope_recorded_by_name_and_refused_once_revoked(admin_stack):
    stack = admin_stack
    auditor = create_key(stack, "auditor", "audit:read")
    other = create_key(stack, "introspector", "introspect")
    email = new_email()
    assert register(stack, email)[0] == 201

    status, _, page = stack.admin_call("GET", "/admin/audit?limit=5", auditor)
    assert status == 200, page
    assert len(page["entries"]) <= 5
    status, _, body = stack.admin_call("GET", "/admin/audit", other)
    assert (status, body["error"]) == (403, "forbidden")
    assert stack.admin_call("GET", "/admin/audit", None)[2]["error"] == "invalid_token"
    assert stack.admin_call("GET", "/admin/audit", auditor[:-1] + "x")[0] == 401

    status, _, page = stack.admin_call("GET", "/admin/audit?type=admin.admin_audit.read_audit&limit=50", auditor)
    actors = {(entry["actor"], entry["status"]) for entry in page["entries"]}
    assert {("auditor", 200), ("introspector", 403)} <= actors

    listed = admin_keys(stack, "list", "--metrics-url", f"{stack.base_url}/metrics")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()[1:]}
    assert rows["auditor"][1] == "audit:read" and rows["auditor"][3] != "-"
    assert auditor not in listed.stdout

    revoked = admin_keys(stack, "revoke", "auditor")
    assert revoked.returncode == 0, revoked.stderr
    status, _, body = stack.admin_call("GET", "/admin/audit", auditor)
    assert (status, body["error"]) == (401, "invalid_token")


def test_a_bad_cursor_or_limit_is_a_422(admin_stack):
    key = create_key(admin_stack, "pager", ALL_SCOPES)
    for query in ("cursor=nonsense", "limit=0", "limit=1000", "user_id="):
        status, _, body = admin_stack.admin_call("GET", f"/admin/audit?{query}", key)
        assert (status, body["error"]) == (422, "validation_error"), (query, body)


# --- accounts, sessions, introspection: every endpoint with the right scope, another, none, a revoked key ---

SCOPE_KEYS = ("users:read", "users:write", "sessions:write", "introspect", "audit:read")


@pytest.fixture(scope="module")
def keys(admin_stack) -> dict[str, str]:
    made = {scope: create_key(admin_stack, f"only-{scope.replace(':', '-')}", scope) for scope in SCOPE_KEYS}
    made["revoked"] = create_key(admin_stack, "soon-revoked", ALL_SCOPES)
    assert admin_keys(admin_stack, "revoke", "soon-revoked").returncode == 0
    return made


def signed_in(stack) -> tuple[str, str, dict]:
    email = new_email()
    status, _, body = register(stack, email)
    assert status == 201
    [code] = emailed_codes(stack, email)
    assert confirm(stack, email, code)[0] == 200
    status, _, pair = login(stack, email)
    assert status == 200, pair
    return body["id"], email, pair


def me(stack, access_token: str):
    return stack.call("GET", "/auth/me", headers={"Authorization": f"Bearer {access_token}"})


def introspect(stack, key: str, token: str) -> dict:
    status, _, body = stack.admin_call("POST", "/admin/introspect", key, {"token": token})
    assert status == 200, body
    return body


def other_scope(scope: str) -> str:
    return "introspect" if scope != "introspect" else "users:read"


def assert_guarded(stack, keys, method: str, path: str, scope: str, body: dict | None = None) -> None:
    """No key, a revoked key and a key of another scope are refused, and change nothing."""
    for key, expected in ((None, (401, "invalid_token")), (keys["revoked"], (401, "invalid_token"))):
        status, _, answer = stack.admin_call(method, path, key, body)
        assert (status, answer["error"]) == expected, (method, path, answer)
    status, _, answer = stack.admin_call(method, path, keys[other_scope(scope)], body)
    assert (status, answer["error"]) == (403, "forbidden"), (method, path, answer)


def test_every_account_endpoint_answers_its_scope_only(admin_stack, keys):
    stack = admin_stack
    user_id, email, pair = signed_in(stack)
    second = login(stack, email)[2]
    cases = [
        ("GET", f"/admin/users?email={email}", "users:read", None, 200),
        ("GET", f"/admin/users/{user_id}", "users:read", None, 200),
        ("GET", f"/admin/users/{user_id}/sessions", "users:read", None, 200),
        ("POST", f"/admin/users/{user_id}/unlock", "users:write", None, 200),
        ("POST", "/admin/introspect", "introspect", {"token": second["access_token"]}, 200),
        ("GET", f"/admin/audit?user_id={user_id}", "audit:read", None, 200),
        ("POST", f"/admin/users/{user_id}/resend-verification", "users:write", None, 409),
        ("DELETE", f"/admin/suppressions/{email}", "users:write", None, 204),
    ]
    for method, path, scope, body, expected in cases:
        assert_guarded(stack, keys, method, path, scope, body)
        status, _, answer = stack.admin_call(method, path, keys[scope], body)
        assert status == expected, (method, path, answer)

    status, _, found = stack.admin_call("GET", f"/admin/users?email={email}", keys["users:read"])
    assert [user["id"] for user in found["users"]] == [user_id]
    status, _, account = stack.admin_call("GET", f"/admin/users/{user_id}", keys["users:read"])
    assert account["status"] == "verified" and account["email_deliverable"] is True
    assert account["lock"] == {"locked": False, "until": None, "failed_logins": 0}
    assert account["second_factor"] == {"mfa": "off", "trusted_devices": 0}
    assert len(account["sessions"]) == 2 and account["last_activity"]["type"] == "user.login"
    assert introspect(stack, keys["introspect"], second["access_token"])["active"] is True

    # One session ended by support: its token is refused at once, the other stays.
    [session] = [
        s
        for s in account["sessions"]
        if s["id"] == introspect(stack, keys["introspect"], second["access_token"])["sid"]
    ]
    path = f"/admin/users/{user_id}/sessions/{session['id']}"
    assert_guarded(stack, keys, "DELETE", path, "sessions:write")
    assert stack.admin_call("DELETE", path, keys["sessions:write"])[0] == 204
    assert me(stack, second["access_token"])[0] == 401
    assert me(stack, pair["access_token"])[0] == 200
    assert stack.admin_call("DELETE", path, keys["sessions:write"])[2]["error"] == "not_found"

    path = f"/admin/users/{user_id}/sessions"
    assert_guarded(stack, keys, "DELETE", path, "sessions:write")
    assert stack.admin_call("DELETE", path, keys["sessions:write"])[0] == 204
    assert me(stack, pair["access_token"])[0] == 401
    assert stack.admin_call("GET", path, keys["users:read"])[2] == {"sessions": []}

    # A forced reset: sessions end and a reset code is mailed, even right after the owner asked for one
    # (the address's cooldown holds anonymous askers, not support); the owner's next ask waits it out.
    pair = login(stack, email)[2]
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    assert len(emailed_codes(stack, email, count=2)) == 2  # the registration's code, then the owner's reset
    path = f"/admin/users/{user_id}/password-reset"
    assert_guarded(stack, keys, "POST", path, "users:write")
    assert stack.admin_call("POST", path, keys["users:write"])[0] == 202
    assert me(stack, pair["access_token"])[0] == 401
    assert len(emailed_codes(stack, email, count=3)) == 3  # and support's
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 429

    for action in ("disable", "enable"):
        path = f"/admin/users/{user_id}/{action}"
        body = {"reason": "reported for spam"} if action == "disable" else None
        assert_guarded(stack, keys, "POST", path, "users:write", body)
        status, _, answer = stack.admin_call("POST", path, keys["users:write"], body)
        assert (status, answer["status"]) == (200, "disabled" if action == "disable" else "verified"), answer

    path = f"/admin/users/{user_id}"
    assert_guarded(stack, keys, "DELETE", path, "users:write")
    assert stack.admin_call("DELETE", path, keys["users:write"])[0] == 204
    assert stack.admin_call("GET", path, keys["users:read"])[2]["error"] == "not_found"
    assert login(stack, email)[0] == 401
    assert register(stack, email)[0] == 201  # the address is free again, as after a deletion's grace


def test_resend_verification_mails_a_pending_account_a_new_code(admin_stack, keys):
    stack = admin_stack
    email = new_email()
    user_id = register(stack, email)[2]["id"]
    emailed_codes(stack, email)
    assert stack.call("POST", "/auth/resend-code", {"email": email})[0] == 429  # the owner waits out the cooldown
    search = f"/admin/users?email={email}&status=pending_verification"
    found = stack.admin_call("GET", search, keys["users:read"])[2]
    assert [user["status"] for user in found["users"]] == ["pending_verification"]
    path = f"/admin/users/{user_id}/resend-verification"
    assert_guarded(stack, keys, "POST", path, "users:write")
    assert stack.admin_call("POST", path, keys["users:write"])[0] == 202
    assert len(emailed_codes(stack, email, count=2)) == 2


def test_a_disable_ends_every_session_at_once_and_its_until_enables_the_account(admin_stack, keys):
    stack = admin_stack
    user_id, email, pair = signed_in(stack)
    assert introspect(stack, keys["introspect"], pair["access_token"])["active"] is True
    until = datetime.now(UTC) + timedelta(seconds=3)
    status, _, account = stack.admin_call(
        "POST",
        f"/admin/users/{user_id}/disable",
        keys["users:write"],
        {"reason": "chargeback", "until": until.isoformat()},
    )
    assert (status, account["status"], account["disabled"]["by"]) == (200, "disabled", "only-users-write")
    assert account["sessions"] == []
    # The very next request refuses the token, on the public API and by introspection.
    assert me(stack, pair["access_token"])[2]["error"] == "invalid_token"
    assert introspect(stack, keys["introspect"], pair["access_token"]) == {"active": False}
    status, _, refused = login(stack, email)
    assert (status, refused["error"]) == (403, "account_disabled")
    assert stack.call("POST", "/auth/login", {"email": email, "password": "a wrong password 1"})[0] == 401
    status, _, page = stack.admin_call("GET", f"/admin/users?email={email}&status=disabled", keys["users:read"])
    assert [user["id"] for user in page["users"]] == [user_id]

    def enabled_by_its_timer():
        entries = stack.admin_call("GET", f"/admin/audit?user_id={user_id}&type=user.enabled", keys["audit:read"])[2]
        return entries["entries"]

    [entry] = eventually(enabled_by_its_timer, "the disable's timer enabled the account", timeout=30)
    assert datetime.fromisoformat(entry["occurred_at"]) >= until.replace(microsecond=0)
    assert login(stack, email)[0] == 200
    status, _, account = stack.admin_call("GET", f"/admin/users/{user_id}", keys["users:read"])
    assert (account["status"], account["disabled"]) == ("verified", None)
    kinds = [
        e["type"] for e in stack.admin_call("GET", f"/admin/audit?user_id={user_id}", keys["audit:read"])[2]["entries"]
    ]
    assert {"user.disabled", "user.enabled", "user.sessions_revoked", "admin.admin_users.disable_user"} <= set(kinds)


def test_unlock_ends_a_lock_at_once(start_stack, tmp_path):
    stack = start_stack(
        ADMIN_KEYS_FILE=str(tmp_path / "keys"), LOCKOUT_THRESHOLD="3", FAILED_LOGIN_WARNING_THRESHOLD="2"
    )
    key = create_key(stack, "support", "users:read,users:write")
    user_id, email, _ = signed_in(stack)
    # From a device the account never signed in from: a lock lets the owner's own devices through.
    stranger = {"X-Device-Id": "a-device-the-account-never-used"}

    def attempt(password: str) -> int:
        return stack.call("POST", "/auth/login", {"email": email, "password": password}, headers=stranger)[0]

    for _ in range(3):
        assert attempt("a wrong password 1") == 401
    assert attempt(PASSWORD) == 401  # locked: the right password too
    account = stack.admin_call("GET", f"/admin/users/{user_id}", key)[2]
    assert account["lock"]["locked"] is True
    status, _, account = stack.admin_call("POST", f"/admin/users/{user_id}/unlock", key)
    assert (status, account["lock"]) == (200, {"locked": False, "until": None, "failed_logins": 0})
    assert attempt(PASSWORD) == 200


def test_introspection_is_active_for_a_live_token_only(start_stack, tmp_path):
    # Tokens live one second here (plus the verifiers' ten seconds of leeway) so that one can expire.
    stack = start_stack(ADMIN_KEYS_FILE=str(tmp_path / "keys"), JWT_TTL_SECONDS="1")
    key = create_key(stack, "gateway", "introspect,users:write,sessions:write")
    user_id, email, pair = signed_in(stack)
    live = introspect(stack, key, pair["access_token"])
    assert live["active"] is True
    assert (live["sub"], live["email"], live["status"]) == (user_id, email, "verified")
    assert live["exp"] - live["iat"] == 1 and live["sid"]

    header, payload, signature = pair["access_token"].split(".")
    forged_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    for forged in (f"{header}.{payload}.{forged_signature}", f"{header}.{payload}.", "not a token", "a" * 4000):
        assert introspect(stack, key, forged) == {"active": False}

    expiring = login(stack, email)[2]["access_token"]
    eventually(lambda: introspect(stack, key, expiring) == {"active": False}, "the token expired", timeout=40)

    ended = login(stack, email)[2]["access_token"]
    sid = introspect(stack, key, ended)["sid"]
    assert stack.admin_call("DELETE", f"/admin/users/{user_id}/sessions/{sid}", key)[0] == 204
    assert introspect(stack, key, ended) == {"active": False}

    disabled = login(stack, email)[2]["access_token"]
    assert stack.admin_call("POST", f"/admin/users/{user_id}/disable", key, {"reason": "fraud"})[0] == 200
    assert introspect(stack, key, disabled) == {"active": False}
    assert stack.admin_call("POST", f"/admin/users/{user_id}/enable", key)[0] == 200

    deleted = login(stack, email)[2]["access_token"]
    assert introspect(stack, key, deleted)["active"] is True
    assert stack.admin_call("DELETE", f"/admin/users/{user_id}", key)[0] == 204
    assert introspect(stack, key, deleted) == {"active": False}


def test_lifting_a_suppression_lets_mail_reach_the_address_again(admin_stack, keys):
    stack = admin_stack
    email = new_email()
    redis_client = redis.Redis.from_url(stack.env["REDIS_URL"])
    suppressions = RedisSuppressions(redis_client, stack.env["REDIS_KEY_PREFIX"])
    try:
        suppressions.suppress(email, "bounce", "postmark", time.time())
        # Each worker process reads the list again at most once per REFRESH_SECONDS: a change written
        # straight to Redis, as here, reaches every process within that window, and not before.
        time.sleep(REFRESH_SECONDS + 0.5)
        status, _, registered = register(stack, email)
        assert status == 201
        # The sentinel: a second address registered after it is mailed, so the first one's mail was skipped.
        sentinel = new_email()
        assert register(stack, sentinel)[0] == 201
        emailed_codes(stack, sentinel)
        assert stack.sink.mails_to(email) == []
        assert stack.admin_call("DELETE", f"/admin/suppressions/{email.upper()}", keys["users:write"])[0] == 204
        eventually(lambda: not suppressions.is_suppressed(email), "the worker lifted the address")
        time.sleep(REFRESH_SECONDS + 0.5)  # the lifting process knows at once, the other worker process within this
        # Support lifts it and resends (the registration's cooldown holds the owner's own resend a minute).
        path = f"/admin/users/{registered['id']}/resend-verification"
        assert stack.admin_call("POST", path, keys["users:write"])[0] == 202
        assert emailed_codes(stack, email)
    finally:
        suppressions.lift(email)
        redis_client.close()
