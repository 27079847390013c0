"""Signing keys: generated at first start, sealed at rest, rotated on schedule (publish before
sign, retire, remove after the last token), agreed on by replicas, read from the operator's file."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import jwt
import mongomock
import pytest

from auth_service.adapters import mongo_schema
from auth_service.adapters.keys_file import KeysFile, KeysFileError
from auth_service.adapters.mongo_signing_keys import MongoSigningKeys
from auth_service.domain.sealed_keys import KeySealer, UnsealError
from auth_service.domain.signing_keys import (
    EDDSA,
    ES256,
    RS256,
    BadSigningKey,
    KeySchedule,
    generate_key,
    key_from_jwk,
)
from auth_service.domain.tokens import InvalidToken, TokenIssuer
from auth_service.service_layer.keyring import FileKeys, KeyRing, RotatingKeys
from tests.unit.conftest import build_system

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE = KeySchedule(
    rotation=timedelta(days=30), publish_lead=timedelta(seconds=600), token_life=timedelta(seconds=920)
)
ISSUER, AUDIENCE = "auth-service", "mobile-app"


class Clock:
    def __init__(self, start: datetime):
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta.total_seconds()


def store(database=None, secret: str = SECRET) -> MongoSigningKeys:
    database = database if database is not None else mongomock.MongoClient()["auth"]
    mongo_schema.migrate(database, unverified_ttl_seconds=60, now=datetime.now(UTC), in_process=True)
    return MongoSigningKeys(database, KeySealer(secret), serialize_writes=True)


def ring(keys: MongoSigningKeys, clock: Clock, alg: str = ES256) -> KeyRing:
    return KeyRing(RotatingKeys(keys, alg, SCHEDULE), clock)


def issuer_of(key_ring: KeyRing, clock: Clock) -> TokenIssuer:
    return TokenIssuer(key_ring.current, 900, ISSUER, AUDIENCE, clock)


def published(key_ring: KeyRing) -> list[str]:
    return [key["kid"] for key in json.loads(key_ring.current().jwks)["keys"]]


@pytest.mark.parametrize("alg", [ES256, EDDSA, RS256])
def test_each_algorithm_signs_and_its_public_half_alone_verifies(alg):
    key = generate_key(alg)
    public = key.public_jwk
    assert public["alg"] == alg and public["use"] == "sig" and public["kid"] == key.kid
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(public)
    token = jwt.encode({"sub": "u"}, key.signer, algorithm=alg, headers={"kid": key.kid})
    assert jwt.decode(token, jwt.PyJWK(public).key, algorithms=[alg])["sub"] == "u"
    assert key_from_jwk(key.private_jwk).kid == key.kid


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kid": None}, "kid"),
        ({"d": None}, "private part"),
        ({"alg": "RS256"}, "does not fit"),
        ({"use": "enc"}, "use"),
        ({"kty": "oct"}, "kty/crv"),
    ],
)
def test_a_jwk_that_cannot_be_a_signing_key_is_refused_with_its_reason(change, message):
    jwk = {**generate_key(ES256).private_jwk, **change}
    with pytest.raises(BadSigningKey, match=message):
        key_from_jwk({name: value for name, value in jwk.items() if value is not None})


def test_the_private_part_is_stored_sealed_and_opens_only_with_the_same_secret_and_kid():
    database = mongomock.MongoClient()["auth"]
    clock = Clock(T0)
    key_ring = ring(store(database), clock)
    signing = key_ring.current().signing
    [document] = database["signing_keys"].find()
    assert signing.private_jwk["d"] not in json.dumps(document, default=str)
    assert document["public_jwk"] == signing.public_jwk
    with pytest.raises(UnsealError):
        store(database, secret="another-secret-that-is-long-enough-0123456").records()
    sealer = KeySealer(SECRET)
    with pytest.raises(UnsealError):  # moved onto another key's record
        sealer.open("another-kid", document["sealed_private_jwk"])
    assert sealer.open(signing.kid, document["sealed_private_jwk"])["d"] == signing.private_jwk["d"]


def test_the_first_key_signs_at_once_and_rotation_publishes_before_signing_and_removes_after_the_last_token():
    clock = Clock(T0)
    keys = store()
    key_ring = ring(keys, clock)
    issuer = issuer_of(key_ring, clock)
    first = key_ring.current().signing
    old_token, _ = issuer.issue("u", 0, "s")
    assert published(key_ring) == [first.kid]

    # Due a lead before the period ends: the next key is published, the first still signs.
    clock.advance(timedelta(days=30) - timedelta(seconds=600))
    key_ring.refresh()
    second = [kid for kid in published(key_ring) if kid != first.kid]
    assert len(second) == 1 and key_ring.current().signing.kid == first.kid
    late_token, _ = issuer.issue("u", 0, "s")  # signed by the first key in its last moments

    clock.advance(timedelta(seconds=600))
    key_ring.refresh()
    assert key_ring.current().signing.kid == second[0]
    assert set(published(key_ring)) == {first.kid, second[0]}
    assert issuer.verify(late_token).subject == "u"  # the retired key still verifies its tokens

    # Removed once every token it signed has expired: then its tokens name a key nobody knows.
    clock.advance(timedelta(seconds=919))
    key_ring.refresh()
    assert first.kid in published(key_ring)
    clock.advance(timedelta(seconds=2))
    key_ring.refresh()
    assert published(key_ring) == second
    assert [record.key.kid for record in keys.records()] == second
    with pytest.raises(InvalidToken, match="unknown key"):
        TokenIssuer(key_ring.current, 10**9, ISSUER, AUDIENCE, clock).verify(old_token)


def test_replicas_on_one_store_rotate_once_and_pick_the_new_key_up_without_a_restart():
    """Several replicas find the rotation due at the same moment: one insert wins."""
    database = mongomock.MongoClient()["auth"]
    clock = Clock(T0)
    replicas = [ring(store(database), clock) for _ in range(4)]
    assert len({replica.current().signing.kid for replica in replicas}) == 1
    assert database["signing_keys"].count_documents({}) == 1

    clock.advance(timedelta(days=30))
    barrier = threading.Barrier(len(replicas))

    def refresh(replica: KeyRing) -> None:
        barrier.wait()
        replica.refresh()

    threads = [threading.Thread(target=refresh, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert database["signing_keys"].count_documents({}) == 2
    assert len({tuple(published(replica)) for replica in replicas}) == 1
    clock.advance(timedelta(seconds=600))
    for replica in replicas:
        replica.refresh()
    assert len({replica.current().signing.kid for replica in replicas}) == 1


def test_a_changed_algorithm_is_rotated_to_through_the_publish_lead():
    database = mongomock.MongoClient()["auth"]
    clock = Clock(T0)
    es256 = ring(store(database), clock, ES256)
    token, _ = issuer_of(es256, clock).issue("u", 0, "s")
    eddsa = ring(store(database), clock, EDDSA)  # restarted with JWT_ALGORITHM=EdDSA
    assert eddsa.current().signing.alg == ES256  # the new key is not served long enough yet
    assert issuer_of(eddsa, clock).verify(token).subject == "u"
    clock.advance(timedelta(seconds=600))
    assert eddsa.refresh().signing.alg == EDDSA


def test_a_token_signed_by_another_deployments_key_with_our_kid_is_refused():
    clock = Clock(T0)
    key_ring = ring(store(), clock)
    ours = key_ring.current().signing
    foreign = generate_key(ES256, kid=ours.kid)
    claims = {"sub": "u", "sid": "s", "iat": int(clock.now), "exp": int(clock.now) + 900}
    claims |= {"iss": ISSUER, "aud": AUDIENCE, "jti": "j", "ver": 0}
    forged = jwt.encode(claims, foreign.signer, algorithm=ES256, headers={"kid": ours.kid})
    with pytest.raises(InvalidToken):
        issuer_of(key_ring, clock).verify(forged)


# --- the operator's keys file ---


def write_keys(path, keys) -> None:
    path.write_text(json.dumps({"keys": [key.private_jwk for key in keys]}))


def test_the_keys_file_first_key_signs_every_key_is_published_and_an_edit_is_picked_up(tmp_path):
    path = tmp_path / "jwks.json"
    old, new = generate_key(ES256), generate_key(EDDSA)
    write_keys(path, [old])
    key_ring = KeyRing(FileKeys(KeysFile(path)))
    assert key_ring.current().signing.kid == old.kid and published(key_ring) == [old.kid]
    write_keys(path, [old, new])  # publish the next key first
    assert published(key_ring) == [old.kid]  # until the next reload
    key_ring.refresh()
    assert key_ring.current().signing.kid == old.kid and set(published(key_ring)) == {old.kid, new.kid}
    write_keys(path, [new, old])  # then let it sign
    key_ring.refresh()
    assert key_ring.current().signing.kid == new.kid


def test_a_broken_keys_file_is_refused_at_start_and_leaves_the_keys_in_hand_later(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": [{"kty": "EC", "kid": "no-private-part"}]}')
    with pytest.raises(KeysFileError):
        KeyRing(FileKeys(KeysFile(path)))
    key = generate_key(ES256)
    write_keys(path, [key])
    key_ring = KeyRing(FileKeys(KeysFile(path)))
    path.write_text("not json")
    with pytest.raises(KeysFileError):
        key_ring.refresh()
    assert key_ring.current().signing.kid == key.kid


def test_the_service_signs_with_the_keys_file_when_one_is_set(tmp_path, unique_email):
    path = tmp_path / "jwks.json"
    key = generate_key(RS256)
    write_keys(path, [key])
    system = build_system({"JWT_SIGNING_KEYS_FILE": str(path)})
    jwks = system.client.get("/.well-known/jwks.json")
    assert jwks.headers["Cache-Control"] == "public, max-age=600"
    assert [published["kid"] for published in jwks.json["keys"]] == [key.kid]
    again = system.client.get("/.well-known/jwks.json", headers={"If-None-Match": jwks.headers["ETag"]})
    assert again.status_code == 304
