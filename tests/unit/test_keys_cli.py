"""``python -m auth_service keys``: the operator's commands on a keys file, and what they refuse."""

from __future__ import annotations

import json
import stat

import pytest

from auth_service.adapters.keys_file import KeysFile
from auth_service.entrypoints import keys_cli
from devtools.mailsink import free_port
from devtools.mongo_wire import MongoWireServer

ENV = {"APP_ENV": "development", "MONGO_URI": "mongomock://"}


@pytest.fixture
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_generate_rotate_and_list_walk_a_keys_file_through_a_rotation(env, tmp_path, capsys):
    path = tmp_path / "jwks.json"
    env.setenv("JWT_SIGNING_KEYS_FILE", str(path))
    assert keys_cli.main(["generate"]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [first] = KeysFile(path).read()
    assert first.alg == "ES256"
    assert keys_cli.main(["generate", "--alg", "EdDSA"]) == 0
    added = KeysFile(path).read()
    assert (added[0].kid, added[1].alg) == (first.kid, "EdDSA")  # added at the end: not signing yet
    assert keys_cli.main(["rotate"]) == 0
    keys = KeysFile(path).read()
    assert (keys[0].alg, keys[1].kid) == ("EdDSA", first.kid)
    capsys.readouterr()
    assert keys_cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert f"{keys[0].kid}\tEdDSA\tsigning" in listed and f"{first.kid}\tES256\tpublished" in listed
    assert all(key.private_jwk["d"] not in listed for key in keys)


def test_rotate_with_one_key_refuses_and_says_what_to_do(env, tmp_path, capsys):
    path = tmp_path / "jwks.json"
    env.setenv("JWT_SIGNING_KEYS_FILE", str(path))
    keys_cli.main(["generate"])
    before = path.read_text()
    assert keys_cli.main(["rotate"]) == 1
    assert "keys generate" in capsys.readouterr().err and path.read_text() == before


def test_a_broken_keys_file_is_named_not_a_traceback(env, tmp_path, capsys):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k"}]}))
    env.setenv("JWT_SIGNING_KEYS_FILE", str(path))
    assert keys_cli.main(["list"]) == 1
    assert "no private part" in capsys.readouterr().err


def test_the_in_process_store_is_out_of_reach_and_hs256_has_no_keys(env, capsys):
    assert keys_cli.main(["list"]) == 2
    assert "mongomock" in capsys.readouterr().err
    env.setenv("JWT_ALGORITHM", "HS256")
    assert keys_cli.main(["rotate"]) == 2
    assert "JWT_SECRET" in capsys.readouterr().err


def test_against_the_services_mongodb_generate_list_and_rotate_share_its_keys(env, capsys):
    """The database the replicas share (the cluster suite's wire-protocol stand-in for MongoDB)."""
    mongo = MongoWireServer(free_port()).start()
    try:
        env.setenv("MONGO_URI", mongo.uri)
        env.setenv("JWT_SECRET", "unit-test-secret-that-is-long-enough-0123456789")
        assert keys_cli.main(["generate"]) == 0
        assert keys_cli.main(["rotate"]) == 0
        out = capsys.readouterr().out
        stored = sorted(mongo._client["auth"]["signing_keys"].find(), key=lambda document: document["generation"])
        assert [document["generation"] for document in stored] == [1, 2]
        assert f"published {stored[1]['_id']} (ES256)" in out
        rows = [line.split("\t") for line in out.splitlines() if line.startswith((stored[0]["_id"], stored[1]["_id"]))]
        assert [row[2] for row in rows[-2:]] == ["signing", "next"]
        assert "sealed_private_jwk" in stored[0] and "d" not in stored[0]["public_jwk"]
    finally:
        mongo.stop()
