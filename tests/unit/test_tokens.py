"""Access tokens: every forged, stale or incomplete token is a 401 invalid_token; keys must be long.

The system signs with ES256 (the default), a key it generated at start and keeps in its store;
the forger's tokens below are signed with that very key unless a test says otherwise, so that
each one is refused for the one flaw it has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auth_service.config import Settings as AuthSettings
from auth_service.domain.signing_keys import KeySet, shared_secret_key
from auth_service.domain.tokens import LEEWAY_SECONDS, InvalidToken, TokenIssuer
from common.settings import SettingsError
from email_service.config import Settings as WorkerSettings

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
ISSUER, AUDIENCE = "auth-service", "mobile-app"
PASSWORD = "correct horse battery"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(subject: str | None, session_id: str = "session-1", **overrides) -> dict:
    now = int(time.time())
    base = {
        "sub": subject,
        "sid": session_id,
        "iat": now,
        "exp": now + 900,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": "token-1",
        "ver": 0,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(system, payload: dict, headers: dict | None = None) -> str:
    """Signed as the system signs: its signing key, its algorithm, its kid."""
    key = system.auth.keys.current().signing
    return jwt.encode(payload, key.signer, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})})


@pytest.fixture
def account(system, unique_email):
    email = unique_email()
    system.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    [code] = system.codes_for(email)
    system.client.post("/auth/confirm", json={"email": email, "code": code})
    login = system.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    token = login.json["access_token"]
    decoded = jwt.decode(token, options={"verify_signature": False})
    return {"id": decoded["sub"], "sid": decoded["sid"], "token": token}


def me(system, authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return system.client.get("/auth/me", headers=headers)


def assert_invalid_token(response) -> None:
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_issued_token_is_accepted_and_verifies_with_the_published_key_alone(system, account):
    assert me(system, f"Bearer {account['token']}").status_code == 200
    header = jwt.get_unverified_header(account["token"])
    assert header["alg"] == "ES256"
    jwks = system.client.get("/.well-known/jwks.json").json
    [published] = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    assert "d" not in published and published["alg"] == "ES256" and published["use"] == "sig"
    public = jwt.PyJWK(published).key
    decoded = jwt.decode(account["token"], public, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)
    assert set(decoded) == {"sub", "sid", "iat", "exp", "iss", "aud", "jti", "ver"}
    assert decoded["sid"] == account["sid"] and decoded["exp"] - decoded["iat"] == 900


def test_each_token_has_its_own_id(system, account):
    first = jwt.decode(account["token"], options={"verify_signature": False})
    token, _ = system.auth.sessions._tokens.issue(account["id"], 0, account["sid"])
    assert jwt.decode(token, options={"verify_signature": False})["jti"] != first["jti"]


def test_alg_none_is_refused(system, account):
    kid = system.auth.keys.current().signing.kid
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    unsigned = f"{header}.{b64(json.dumps(claims(account['id'])).encode())}."
    assert_invalid_token(me(system, f"Bearer {unsigned}"))


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # the forger's choice of algorithm, not ours
@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hmac_keyed_with_the_public_key_or_the_secret_is_refused(system, account, algorithm):
    key = system.auth.keys.current().signing
    published = system.client.get("/.well-known/jwks.json").json["keys"][0]
    pem = key.verifier.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    for hmac_key in (pem, json.dumps(published), SECRET):
        forged = _hmac_token(claims(account["id"], account["sid"]), hmac_key, algorithm, key.kid)
        assert_invalid_token(me(system, f"Bearer {forged}"))


def _hmac_token(payload: dict, key: str, algorithm: str, kid: str) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[algorithm]
    header = b64(json.dumps({"alg": algorithm, "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), digest).digest()
    return f"{header}.{body}.{b64(signature)}"


def test_wrong_signature_is_refused(system, account):
    header, _, signature = account["token"].split(".")
    # The same account with a longer life: only the signature can tell.
    tampered_payload = b64(json.dumps(claims(account["id"], account["sid"], exp=int(time.time()) + 86400)).encode())
    assert_invalid_token(me(system, f"Bearer {header}.{tampered_payload}.{signature}"))


def test_expired_token_is_refused_past_the_leeway(system, account):
    now = int(time.time())
    within_leeway = signed(system, claims(account["id"], account["sid"], iat=now - 1000, exp=now - LEEWAY_SECONDS + 3))
    assert me(system, f"Bearer {within_leeway}").status_code == 200
    expired = signed(system, claims(account["id"], account["sid"], iat=now - 1000, exp=now - LEEWAY_SECONDS - 3))
    assert_invalid_token(me(system, f"Bearer {expired}"))


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "iss", "aud", "ver", "sid", "jti"])
def test_each_required_claim_missing_is_refused(system, account, missing):
    token = signed(system, claims(account["id"], account["sid"], **{missing: None}))
    assert_invalid_token(me(system, f"Bearer {token}"))


def test_a_token_without_a_kid_is_refused(system, account):
    key = system.auth.keys.current().signing
    token = jwt.encode(claims(account["id"], account["sid"]), key.signer, algorithm=key.alg)
    assert_invalid_token(me(system, f"Bearer {token}"))


@pytest.mark.parametrize(("claim", "value"), [("aud", "another-app"), ("iss", "another-issuer")])
def test_wrong_audience_or_issuer_is_refused(system, account, claim, value):
    assert_invalid_token(me(system, f"Bearer {signed(system, claims(account['id'], **{claim: value}))}"))


@pytest.mark.parametrize("subject", ["", "no-such-user"])
def test_a_subject_that_is_no_account_is_refused(system, subject):
    assert_invalid_token(me(system, f"Bearer {signed(system, claims(subject))}"))


@pytest.mark.parametrize(("claim", "value"), [("sub", 12345), ("sid", 7), ("sid", ""), ("ver", True), ("iat", "now")])
def test_a_claim_of_the_wrong_type_is_refused(claim, value):
    keys = KeySet.of(shared_secret_key(SECRET), [])
    issuer = TokenIssuer(lambda: keys, 900, ISSUER, AUDIENCE)
    token = jwt.encode(claims("someone") | {claim: value}, SECRET, algorithm="HS256", headers={"kid": keys.signing.kid})
    with pytest.raises(InvalidToken):
        issuer.verify(token)


def test_with_hs256_chosen_tokens_are_signed_with_the_secret_and_nothing_is_published(make_system, unique_email):
    system = make_system({"JWT_ALGORITHM": "HS256"})
    email = unique_email()
    system.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    [code] = system.codes_for(email)
    system.client.post("/auth/confirm", json={"email": email, "code": code})
    token = system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).json["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert me(system, f"Bearer {token}").status_code == 200
    assert system.client.get("/.well-known/jwks.json").json == {"keys": []}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer " + "x" * 5000,
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30",
        "Bearer e30.e30.e30",
    ],
)
def test_missing_or_malformed_authorization_is_refused(system, authorization):
    assert_invalid_token(me(system, authorization))


def test_malformed_header_json_is_refused(system, account):
    _, payload, signature = account["token"].split(".")
    assert_invalid_token(me(system, f"Bearer {b64(b'{not json')}.{payload}.{signature}"))


# --- keys ---------------------------------------------------------------------

SHORT = "x" * 31
LONG_ENOUGH = "x" * 32


@pytest.mark.parametrize(("settings", "name"), [(AuthSettings, "JWT_SECRET"), (WorkerSettings, "CODE_HMAC_KEY")])
def test_a_short_or_missing_key_refuses_to_start_outside_development(settings, name):
    if settings is AuthSettings:  # the worker falls back to a random key shared through Redis
        with pytest.raises(SettingsError, match=name):
            settings.from_env({"APP_ENV": "production"})
    with pytest.raises(SettingsError, match=name):
        settings.from_env({"APP_ENV": "production", name: SHORT})
    with pytest.raises(SettingsError, match=name):
        settings.from_env({"APP_ENV": "production", name: "é" * 15 + "x"})  # 31 bytes, 16 characters
    other = {"JWT_SECRET": LONG_ENOUGH, "CODE_HMAC_KEY": LONG_ENOUGH}
    assert settings.from_env({**other, "APP_ENV": "production", name: LONG_ENOUGH})


def test_development_may_run_without_keys():
    assert AuthSettings.from_env({"APP_ENV": "development"}).jwt_secret
    assert WorkerSettings.from_env({"APP_ENV": "development"}).code_hmac_key is None
