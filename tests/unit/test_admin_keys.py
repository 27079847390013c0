"""Admin keys, their file and scopes, and the admin API's cursors: the pure rules and the file, on fakes."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from auth_service.adapters.admin_keys_file import AdminKeysFile, AdminKeysFileError
from auth_service.domain import admin_keys
from auth_service.domain.admin_keys import AUDIT_READ, INTROSPECT, USERS_READ, new_key, parse_line, parse_presented
from auth_service.domain.errors import Forbidden, InvalidTokenError
from auth_service.domain.paging import BadCursor, decode_cursor, encode_cursor
from auth_service.entrypoints import admin_keys_cli
from auth_service.entrypoints.admin_keys_cli import parse_last_use
from auth_service.service_layer.admin_access import AdminAccess

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_key_is_its_id_and_256_random_bits_and_only_the_digest_is_kept():
    made = new_key("support-ada", [USERS_READ], NOW)
    key_id, secret = parse_presented(made.key)
    assert made.key == f"ak_{key_id}_{secret}" and key_id == made.record.key_id
    assert len(secret) == 43  # base64url of 32 bytes
    line = admin_keys.format_line(made.record)
    assert secret not in line and made.key not in line
    assert parse_line(line) == made.record
    assert made.record.matches(secret) and not made.record.matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert new_key("other", [USERS_READ], NOW).key != made.key


NOT_KEYS = [None, "", "ak_", "Bearer x", "ak_0123456789abcdef_short", "sk_0123456789abcdef_" + "a" * 43]


@pytest.mark.parametrize("presented", NOT_KEYS)
def test_what_is_no_key_of_this_form_is_refused_before_any_lookup(presented):
    assert parse_presented(presented) is None


@pytest.mark.parametrize(
    ("name", "scopes"), [("", [USERS_READ]), ("has space", [USERS_READ]), ("ok", []), ("ok", ["users:delete"])]
)
def test_a_key_needs_a_plain_name_and_known_scopes(name, scopes):
    with pytest.raises(ValueError):
        new_key(name, scopes, NOW)


@pytest.mark.parametrize(
    "line",
    [
        "only\tthree\tfields",
        "ada\tusers:read\tmd5$0123456789abcdef$" + "0" * 64 + "\t2026-12-06T12:00:00Z",
        "ada\tusers:read\tsha256$0123$" + "0" * 64 + "\t2026-12-06T12:00:00Z",
        "ada\tusers:nope\tsha256$0123456789abcdef$" + "0" * 64 + "\t2026-12-06T12:00:00Z",
        "ada\tusers:read\tsha256$0123456789abcdef$" + "0" * 64 + "\tyesterday",
    ],
)
def test_a_bad_line_is_refused(line):
    with pytest.raises(admin_keys.BadKeyLine):
        parse_line(line)


class Keys:
    def __init__(self, *keys):
        self.keys = {key.key_id: key for key in keys}

    def find(self, key_id):
        return self.keys.get(key_id)


def test_no_unknown_or_wrong_key_is_401_and_a_missing_scope_403():
    made = new_key("reader", [USERS_READ, AUDIT_READ], NOW)
    used = []
    access = AdminAccess(Keys(made.record), on_used=used.append)
    key = access.authenticate(made.key)
    assert key.name == "reader" and used == [key]
    access.authorize(key, AUDIT_READ)
    with pytest.raises(Forbidden):
        access.authorize(key, INTROSPECT)
    key_id, _ = parse_presented(made.key)
    other = new_key("other", [USERS_READ], NOW)
    for presented in (None, "nonsense", other.key, f"ak_{key_id}_{parse_presented(other.key)[1]}"):
        with pytest.raises(InvalidTokenError):
            access.authenticate(presented)
    assert used == [key]


def test_the_file_is_read_again_when_it_changes_and_a_broken_file_admits_nobody(tmp_path):
    path = tmp_path / "keys"
    writer = AdminKeysFile(path)
    first, second = new_key("first", [USERS_READ], NOW), new_key("second", [USERS_READ], NOW)
    writer.write([first.record])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    reader = AdminKeysFile(path)
    assert reader.find(first.record.key_id) == first.record
    writer.write([second.record])  # first revoked, second added
    assert reader.find(first.record.key_id) is None
    assert reader.find(second.record.key_id) == second.record
    path.write_text(path.read_text() + "garbage line\n")
    assert reader.find(second.record.key_id) is None
    with pytest.raises(AdminKeysFileError):
        writer.read()
    os.remove(path)
    assert reader.find(second.record.key_id) is None
    assert writer.read() == []


def test_two_keys_may_not_share_a_name(tmp_path):
    path = tmp_path / "keys"
    one, two = new_key("same", [USERS_READ], NOW), new_key("same", [INTROSPECT], NOW)
    AdminKeysFile(path).write([one.record, two.record])
    with pytest.raises(AdminKeysFileError):
        AdminKeysFile(path).read()


def test_a_cursor_round_trips_and_anything_else_is_refused():
    cursor = encode_cursor("ada@example.com", "ü")
    assert decode_cursor(cursor, 2) == ("ada@example.com", "ü")
    for bad in ("", "!!!", encode_cursor("one"), "W10", "eyJhIjoxfQ", "x" * 5000):
        with pytest.raises(BadCursor):
            decode_cursor(bad, 2)


def test_the_last_use_of_each_key_is_read_from_the_metrics():
    exposition = (
        "# HELP admin_key_last_used_timestamp_seconds When each admin key last made a request (Unix time)\n"
        'admin_key_last_used_timestamp_seconds{key="support-ada"} 1.7650224e+09\n'
        'admin_key_last_used_timestamp_seconds{key="billing"} 1765022500.5\n'
        'http_requests_total{method="GET"} 3.0\n'
    )
    assert parse_last_use(exposition) == {"support-ada": 1.7650224e09, "billing": 1765022500.5}


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("ADMIN_KEYS_FILE", str(tmp_path / "admin-keys"))
    return tmp_path / "admin-keys"


def test_the_commands_make_list_and_revoke_keys_and_refuse_what_is_no_key(cli_env, capsys):
    assert admin_keys_cli.main(["create", "--name", "ada", "--scopes", "users:read,audit:read"]) == 0
    key = capsys.readouterr().out.strip()
    [record] = AdminKeysFile(cli_env).read()
    assert (record.name, record.scopes) == ("ada", frozenset({USERS_READ, AUDIT_READ}))
    assert record.matches(parse_presented(key)[1]) and key not in cli_env.read_text()
    assert admin_keys_cli.main(["create", "--name", "ada", "--scopes", "introspect"]) == 1  # a name is one key's
    assert admin_keys_cli.main(["create", "--name", "bob", "--scopes", "users:everything"]) == 2
    assert admin_keys_cli.main(["create", "--name", "b b", "--scopes", "introspect"]) == 2
    capsys.readouterr()
    assert admin_keys_cli.main(["list", "--metrics-url", "http://127.0.0.1:9/metrics"]) == 0
    listed = capsys.readouterr()
    assert listed.out.splitlines()[1].split("\t")[:2] == ["ada", "users:read,audit:read"]
    assert listed.out.splitlines()[1].split("\t")[3] == "-" and "did not answer" in listed.err
    assert admin_keys_cli.main(["revoke", "nobody"]) == 1
    assert admin_keys_cli.main(["revoke", "ada"]) == 0
    assert AdminKeysFile(cli_env).read() == []


def test_the_commands_need_the_keys_file_setting(monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.delenv("ADMIN_KEYS_FILE", raising=False)
    assert admin_keys_cli.main(["list"]) == 2
