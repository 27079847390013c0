"""The admin API on the real auth process: its own port, admin keys from ADMIN_KEYS_FILE, scopes, the audit.

Keys are made and revoked with ``python -m auth_service admin-keys``, as an
operator does, against the file the running service reads.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devtools.stack import http_json
from tests.integration.test_contract_flow import new_email, register

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
