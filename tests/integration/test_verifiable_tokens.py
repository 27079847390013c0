"""Tokens other services verify, on the real processes.

Two auth replicas share one MongoDB the way the cluster suite's replicas do
(devtools/mongo_wire.py: there is no MongoDB server on this machine) and
rotate their signing keys in seconds: a rotation every ROTATION_SECONDS, the
JWKS cached JWKS_MAX_AGE_SECONDS, tokens living TOKEN_SECONDS. Services of
somebody else's, knowing only the JWKS URL, verify every token the replicas
issue across the rotations: PyJWT's ``PyJWKClient``, a gateway-like cache
that refetches only when ``Cache-Control`` says so, and Node's ``jose``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import jwt
import pika
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auth_service.domain.sealed_keys import KeySealer
from auth_service.domain.signing_keys import ES256, generate_key, key_from_jwk
from devtools.mailsink import free_port
from devtools.mongo_wire import MongoWireServer
from devtools.stack import LocalStack, Service, http_form, http_json
from tests.integration.conftest import BASE_OVERRIDES, RABBITMQ_URL
from tests.integration.test_contract_flow import PASSWORD, confirm, emailed_codes, new_email, register
from tests.node_programs import node_programs

ROOT = Path(__file__).resolve().parents[2]
ROTATION_SECONDS = 10
JWKS_MAX_AGE_SECONDS = 2
TOKEN_SECONDS = 5
ISSUER, AUDIENCE = "auth-service", "mobile-app"
ROTATING = {
    "JWT_KEY_ROTATION_DAYS": repr(ROTATION_SECONDS / 86400),
    "JWKS_MAX_AGE_SECONDS": str(JWKS_MAX_AGE_SECONDS),
    "JWT_TTL_SECONDS": str(TOKEN_SECONDS),
}
ROTATED = "signing key rotation: next key published"
NOT_ME_LINK = re.compile(r"http://\S+/auth/not-me\?token=(\S+)")


@dataclass
class Replicas:
    stack: LocalStack
    second: Service
    second_url: str
    mongo: MongoWireServer

    @property
    def urls(self) -> list[str]:
        return [self.stack.base_url, self.second_url]

    def call(self, replica: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        return http_json(method, self.urls[replica] + path, body, headers=headers)

    def stored_keys(self) -> list[dict]:
        database = self.mongo._client[self.stack.env.get("MONGO_DB", "auth")]
        return sorted(database["signing_keys"].find(), key=lambda document: document["generation"])

    def rotations_logged(self) -> int:
        return sum(log.count(ROTATED) for log in (self.stack.auth.log_text(), self.second.log_text()))


def wait_ready(service: Service, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert service.exit_code() is None, service.log_text()[-3000:]
        try:
            if http_json("GET", url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready:\n{service.log_text()[-3000:]}")


@pytest.fixture(scope="module")
def replicas(start_module_stack, tmp_path_factory):
    mongo = MongoWireServer(free_port()).start()
    stack = start_module_stack(MONGO_URI=mongo.uri, **ROTATING)
    port = free_port()
    second = Service(
        "auth_service", stack.env, tmp_path_factory.mktemp("replica") / "auth2.log", {"AUTH_PORT": str(port)}
    )
    second.start()
    try:
        wait_ready(second, f"http://127.0.0.1:{port}/readyz")
        yield Replicas(stack, second, f"http://127.0.0.1:{port}", mongo)
    finally:
        second.stop()
        mongo.stop()


def signed_in(replicas: Replicas) -> tuple[str, dict]:
    stack = replicas.stack
    email = new_email()
    assert register(stack, email)[0] == 201
    [code] = emailed_codes(stack, email)
    assert confirm(stack, email, code)[0] == 200
    status, _, pair = replicas.call(1, "POST", "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, pair
    return email, pair


class CacheControlVerifier:
    """A gateway's way: fetch the JWKS, keep it as long as Cache-Control allows, and never fetch it
    again early, not even for a kid it does not know. Publishing each key a cache time before it
    signs is what lets such a verifier through a rotation."""

    def __init__(self, url: str):
        self._url = url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fresh_until = 0.0
        self.fetches = 0

    def verify(self, token: str) -> dict:
        if time.monotonic() >= self._fresh_until:
            with urlopen(self._url, timeout=5) as answer:  # noqa: S310 (the test's own loopback URL)
                cache_control = re.search(r"max-age=(\d+)", answer.headers["Cache-Control"])
                assert cache_control is not None, answer.headers["Cache-Control"]
                max_age = int(cache_control.group(1))
                self._keys = {key["kid"]: jwt.PyJWK(key) for key in json.load(answer)["keys"]}
            self._fresh_until = time.monotonic() + max_age
            self.fetches += 1
        key = self._keys[jwt.get_unverified_header(token)["kid"]]
        return jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE, issuer=ISSUER)


def tokens_across_rotations(replicas: Replicas, pair: dict, seconds: float):
    """Fresh access tokens, refreshed on each replica in turn, for ``seconds``; yields each one."""
    deadline = time.monotonic() + seconds
    replica = 0
    while time.monotonic() < deadline:
        status, _, pair = replicas.call(
            replica, "POST", "/auth/token/refresh", {"refresh_token": pair["refresh_token"]}
        )
        assert status == 200, pair
        yield pair["access_token"]
        replica = 1 - replica
        time.sleep(0.4)


def test_a_service_with_only_the_jwks_url_verifies_every_token_through_rotations_with_pyjwt(replicas):
    _, pair = signed_in(replicas)
    jwks_url = f"{replicas.urls[0]}/.well-known/jwks.json"
    pyjwk_client = jwt.PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=JWKS_MAX_AGE_SECONDS)
    gateway = CacheControlVerifier(f"{replicas.urls[1]}/.well-known/jwks.json")
    kids, verified = set(), 0
    for token in tokens_across_rotations(replicas, pair, 2.5 * ROTATION_SECONDS):
        key = pyjwk_client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE, issuer=ISSUER)
        assert gateway.verify(token) == claims
        assert set(claims) == {"iss", "aud", "sub", "sid", "iat", "exp", "jti", "ver"}
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "ES256" and header["kid"]
        kids.add(header["kid"])
        verified += 1
    assert len(kids) >= 2, "no rotation happened while tokens were verified"
    print(f"\n{verified} tokens verified under {len(kids)} keys; the gateway fetched the JWKS {gateway.fetches} times")


def test_a_node_service_with_jose_verifies_every_token_through_rotations(replicas):
    node = node_programs("jose", "the Node verifier")
    _, pair = signed_in(replicas)
    verifier = subprocess.Popen(
        [
            "node",
            str(node / "verify.mjs"),
            f"{replicas.urls[0]}/.well-known/jwks.json",
            ISSUER,
            AUDIENCE,
            str(JWKS_MAX_AGE_SECONDS),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert verifier.stdin is not None and verifier.stdout is not None
    try:
        kids, verified = set(), 0
        for token in tokens_across_rotations(replicas, pair, 2.5 * ROTATION_SECONDS):
            verifier.stdin.write(token + "\n")
            verifier.stdin.flush()
            answer = json.loads(verifier.stdout.readline())
            assert answer["ok"], answer
            assert answer["sid"] == jwt.decode(token, options={"verify_signature": False})["sid"]
            kids.add(answer["kid"])
            verified += 1
        forged = jwt.encode({"sub": "x"}, "a-secret-of-the-forgers-own-0123456789", algorithm="HS256")
        verifier.stdin.write(forged + "\n")
        verifier.stdin.flush()
        assert json.loads(verifier.stdout.readline())["ok"] is False
    finally:
        verifier.stdin.close()
        verifier.wait(10)
    assert len(kids) >= 2, "no rotation happened while tokens were verified"
    print(f"\nNode (jose) verified {verified} tokens under {len(kids)} keys")


def test_two_replicas_on_one_mongodb_rotate_once_each_time_not_twice(replicas):
    deadline = time.monotonic() + 2 * ROTATION_SECONDS
    while len(replicas.stored_keys()) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    stored = replicas.stored_keys()
    generations = [document["generation"] for document in stored]
    assert generations == list(range(generations[0], generations[-1] + 1)), generations
    # Every key either replica ever added was logged once, by the one whose insert won.
    assert replicas.rotations_logged() == generations[-1]
    starts = [document["signs_from"].timestamp() for document in stored]
    for earlier, later in itertools.pairwise(starts):
        assert later - earlier >= ROTATION_SECONDS - 1, "two keys for one period: a rotation done twice"
    for document in stored[1:]:
        lead = (document["signs_from"] - document["published_at"]).total_seconds()
        assert lead >= JWKS_MAX_AGE_SECONDS, "a key signed before a cached JWKS could hold it"
    assert "d" not in stored[-1]["public_jwk"] and "sealed_private_jwk" in stored[-1]
    sealer = KeySealer(BASE_OVERRIDES["JWT_SECRET"])
    logs = replicas.stack.auth.log_text() + replicas.second.log_text()
    for document in stored:
        assert sealer.open(document["_id"], document["sealed_private_jwk"])["d"] not in logs

    def published(index: int) -> set[str]:
        return {key["kid"] for key in replicas.call(index, "GET", "/.well-known/jwks.json")[2]["keys"]}

    # Both replicas serve the same keys, each from its own memory, at most one reload apart.
    deadline = time.monotonic() + 3
    while published(0) != published(1) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert published(0) == published(1)


def _claims(subject: str, session_id: str) -> dict:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "sid": session_id,
        "iat": now,
        "exp": now + 60,
        "jti": "forged",
        "ver": 0,
    }


def _b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def test_forged_tokens_are_refused_and_the_genuine_key_is_accepted(replicas):
    _, pair = signed_in(replicas)
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    payload = _claims(claims["sub"], claims["sid"])
    sealer = KeySealer(BASE_OVERRIDES["JWT_SECRET"])

    def me(token: str, replica: int = 0) -> int:
        return replicas.call(replica, "GET", "/auth/me", headers={"Authorization": f"Bearer {token}"})[0]

    stored = {document["_id"]: document for document in replicas.stored_keys()}
    kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    ours = key_from_jwk(sealer.open(kid, stored[kid]["sealed_private_jwk"]))
    # The control: the key the service itself holds, with every claim right, is accepted.
    assert me(jwt.encode(payload, ours.signer, algorithm=ES256, headers={"kid": kid})) == 200

    pem = ours.verifier.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(payload).encode())
    hs256_with_public_key = (
        f"{header}.{body}.{_b64(hmac.new(pem, f'{header}.{body}'.encode(), hashlib.sha256).digest())}"
    )
    alg_none = f"{_b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{body}."
    unknown_kid = jwt.encode(payload, ours.signer, algorithm=ES256, headers={"kid": "no-such-key"})
    foreign = jwt.encode(payload, generate_key(ES256).signer, algorithm=ES256, headers={"kid": kid})
    for name, token in {
        "HS256 keyed with the public key": hs256_with_public_key,
        "alg none": alg_none,
        "unknown kid": unknown_kid,
        "another deployment's key": foreign,
    }.items():
        assert me(token, 0) == 401 and me(token, 1) == 401, name

    # A retired key, once removed from the set, signs nothing that is accepted, however fresh the token.
    deadline = time.monotonic() + ROTATION_SECONDS + 10 + TOKEN_SECONDS + 10
    while kid in {document["_id"] for document in replicas.stored_keys()} and time.monotonic() < deadline:
        time.sleep(1)
    assert kid not in {document["_id"] for document in replicas.stored_keys()}, "the key was never removed"
    time.sleep(1)  # one reload of each replica
    published = {key["kid"] for key in replicas.call(0, "GET", "/.well-known/jwks.json")[2]["keys"]}
    assert kid not in published
    removed_key_token = jwt.encode(
        _claims(claims["sub"], "another-session"), ours.signer, algorithm=ES256, headers={"kid": kid}
    )
    assert me(removed_key_token, 0) == 401 and me(removed_key_token, 1) == 401


class EventWatcher:
    """Another service's queue bound to ``user.sessions_revoked``."""

    def __init__(self, exchange: str):
        self._connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        self._channel = self._connection.channel()
        self.queue = self._channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self._channel.queue_bind(self.queue, exchange, routing_key="user.sessions_revoked")

    def next(self, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, _, body = self._channel.basic_get(self.queue, auto_ack=True)
            if method is not None:
                return json.loads(body)
            self._connection.sleep(0.05)
        raise AssertionError("no user.sessions_revoked event")

    def close(self) -> None:
        self._channel.queue_delete(self.queue)
        self._connection.close()


@pytest.fixture
def watcher(replicas):
    watching = EventWatcher(replicas.stack.env["ACCOUNT_EVENTS_EXCHANGE"])
    yield watching
    watching.close()


def _refused_on_every_replica(replicas: Replicas, access_token: str) -> float:
    """The next request on the replica that ended the session is refused (asserted by the caller);
    the other replica refuses as soon as the event reaches it: how long that took, in seconds."""
    started = time.monotonic()
    while time.monotonic() - started < 5:
        statuses = [
            replicas.call(index, "GET", "/auth/me", headers={"Authorization": f"Bearer {access_token}"})[0]
            for index in (0, 1)
        ]
        if statuses == [401, 401]:
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"still accepted somewhere: {statuses}")


def me_status(replicas: Replicas, replica: int, token: str) -> int:
    return replicas.call(replica, "GET", "/auth/me", headers={"Authorization": f"Bearer {token}"})[0]


def test_logout_ends_the_sessions_access_token_at_once_and_publishes_it(replicas, watcher):
    email, pair = signed_in(replicas)
    other_device = replicas.call(0, "POST", "/auth/login", {"email": email, "password": PASSWORD})[2]
    assert me_status(replicas, 0, pair["access_token"]) == me_status(replicas, 1, pair["access_token"]) == 200
    assert replicas.call(1, "POST", "/auth/logout", {"refresh_token": pair["refresh_token"]})[0] == 204
    assert me_status(replicas, 1, pair["access_token"]) == 401  # the very next request
    delay = _refused_on_every_replica(replicas, pair["access_token"])
    event = watcher.next()
    sid = jwt.decode(pair["access_token"], options={"verify_signature": False})["sid"]
    assert (event["type"], event["session_ids"], event["reason"]) == ("user.sessions_revoked", [sid], "logout")
    assert me_status(replicas, 0, other_device["access_token"]) == 200
    print(f"\nthe other replica refused the logged-out session's token {delay * 1000:.0f} ms after the logout")


def test_password_change_ends_every_other_session_at_once_and_publishes_it(replicas, watcher):
    email, pair = signed_in(replicas)
    other_device = replicas.call(1, "POST", "/auth/login", {"email": email, "password": PASSWORD})[2]
    change = {"current_password": PASSWORD, "new_password": "a brand new passphrase 7"}
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    status, _, new_pair = replicas.call(0, "POST", "/auth/password/change", change, headers=headers)
    assert status == 200
    for token in (pair["access_token"], other_device["access_token"]):
        assert me_status(replicas, 0, token) == me_status(replicas, 1, token) == 401
    assert me_status(replicas, 1, new_pair["access_token"]) == 200
    event = watcher.next()
    assert (event["all"], event["reason"]) == (True, "password_changed") and "session_ids" not in event


def test_this_wasnt_me_ends_every_session_at_once_and_publishes_it(replicas, watcher):
    email, pair = signed_in(replicas)
    stack = replicas.stack
    status, _, intruder = replicas.call(
        0, "POST", "/auth/login", {"email": email, "password": PASSWORD}, headers={"X-Device-Id": "intruder"}
    )
    assert status == 200
    [notice] = [mail for mail in stack.sink.wait_for(email, count=3, timeout=15) if NOT_ME_LINK.search(mail.text)]
    token = NOT_ME_LINK.search(notice.text).group(1)
    assert http_form(f"{replicas.urls[1]}/auth/not-me", {"token": token})[0] == 200
    for access_token in (pair["access_token"], intruder["access_token"]):
        assert me_status(replicas, 0, access_token) == me_status(replicas, 1, access_token) == 401
    event = watcher.next()
    assert (event["all"], event["reason"]) == (True, "not_me")


def test_an_app_holding_an_hs256_token_recovers_by_refresh_after_the_switch_to_es256(start_stack, tmp_path):
    """The deployment upgrades: same database, the service restarted with JWT_ALGORITHM=ES256."""
    mongo = MongoWireServer(free_port()).start()
    try:
        stack = start_stack(MONGO_URI=mongo.uri, JWT_ALGORITHM="HS256")
        email = new_email()
        assert register(stack, email)[0] == 201
        [code] = emailed_codes(stack, email)
        assert confirm(stack, email, code)[0] == 200
        pair = stack.call("POST", "/auth/login", {"email": email, "password": PASSWORD})[2]
        assert jwt.get_unverified_header(pair["access_token"])["alg"] == "HS256"
        assert stack.call("GET", "/.well-known/jwks.json")[2] == {"keys": []}

        stack.auth.stop()
        stack.auth = Service("auth_service", stack.env, tmp_path / "auth-es256.log", {"JWT_ALGORITHM": "ES256"})
        stack.auth.start()
        wait_ready(stack.auth, f"{stack.base_url}/readyz")

        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert stack.call("GET", "/auth/me", headers=bearer)[0] == 401  # the app's old token: refused
        status, _, renewed = stack.call("POST", "/auth/token/refresh", {"refresh_token": pair["refresh_token"]})
        assert status == 200  # nothing else is needed: the refresh token is opaque and kept
        assert jwt.get_unverified_header(renewed["access_token"])["alg"] == "ES256"
        assert stack.call("GET", "/auth/me", headers={"Authorization": f"Bearer {renewed['access_token']}"})[0] == 200
        client = jwt.PyJWKClient(f"{stack.base_url}/.well-known/jwks.json")
        key = client.get_signing_key_from_jwt(renewed["access_token"])
        jwt.decode(renewed["access_token"], key.key, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)
    finally:
        mongo.stop()


def test_replicas_sharing_a_keys_file_follow_the_operators_rotation_without_a_restart(start_stack, tmp_path):
    """The runbook of docs/security.md, step by step, on two replicas that mount one file."""
    keys_path = tmp_path / "jwks.json"
    mongo = MongoWireServer(free_port()).start()

    def keys_command(*args: str) -> str:
        env = {**stack_env, "JWT_SIGNING_KEYS_FILE": str(keys_path)}
        done = subprocess.run(
            [sys.executable, "-m", "auth_service", "keys", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        stack_env = {**os.environ, **BASE_OVERRIDES, "MONGO_URI": mongo.uri}
        keys_command("generate")
        first = key_from_jwk(json.loads(keys_path.read_text())["keys"][0])
        stack = start_stack(MONGO_URI=mongo.uri, JWT_SIGNING_KEYS_FILE=str(keys_path), JWKS_MAX_AGE_SECONDS="2")
        port = free_port()
        second = Service("auth_service", stack.env, tmp_path / "auth2.log", {"AUTH_PORT": str(port)})
        second.start()
        replicas = Replicas(stack, second, f"http://127.0.0.1:{port}", mongo)
        try:
            wait_ready(second, f"{replicas.second_url}/readyz")
            email, pair = signed_in(replicas)

            def published() -> list[set[str]]:
                return [
                    {key["kid"] for key in replicas.call(index, "GET", "/.well-known/jwks.json")[2]["keys"]}
                    for index in (0, 1)
                ]

            def fresh_kids() -> set[str]:
                body = {"email": email, "password": PASSWORD}
                return {
                    jwt.get_unverified_header(replicas.call(index, "POST", "/auth/login", body)[2]["access_token"])[
                        "kid"
                    ]
                    for index in (0, 1)
                }

            def eventually(check, timeout: float = 10.0) -> None:
                deadline = time.monotonic() + timeout
                while not check():
                    assert time.monotonic() < deadline, "the replicas did not pick the edit up"
                    time.sleep(0.2)

            assert published() == [{first.kid}, {first.kid}] and fresh_kids() == {first.kid}
            keys_command("generate", "--alg", "EdDSA")  # 1. publish the next key
            new = key_from_jwk(json.loads(keys_path.read_text())["keys"][1])
            eventually(lambda: published() == [{first.kid, new.kid}] * 2)
            assert fresh_kids() == {first.kid}  # published, not signing
            keys_command("rotate")  # 3. (after the cache time) let it sign
            eventually(lambda: fresh_kids() == {new.kid})
            for index in (0, 1):  # the old key's tokens still verify
                assert me_status(replicas, index, pair["access_token"]) == 200
            document = json.loads(keys_path.read_text())
            document["keys"] = [key for key in document["keys"] if key["kid"] != first.kid]
            keys_path.write_text(json.dumps(document))  # 4. (after the token lifetime) remove the old key
            eventually(lambda: published() == [{new.kid}] * 2)
            for index in (0, 1):
                assert me_status(replicas, index, pair["access_token"]) == 401
        finally:
            second.stop()
    finally:
        mongo.stop()
