"""Access tokens: every forged, stale or incomplete token is a 401 invalid_token; keys must be long."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from auth_service.config import Settings as AuthSettings
from auth_service.domain.tokens import LEEWAY_SECONDS, InvalidToken, TokenIssuer
from common.settings import SettingsError
from email_service.config import Settings as WorkerSettings

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
ISSUER, AUDIENCE = "auth-service", "mobile-app"
PASSWORD = "correct horse battery"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(subject: str, **overrides) -> dict:
    now = int(time.time())
    base = {"sub": subject, "iat": now, "exp": now + 900, "iss": ISSUER, "aud": AUDIENCE, "ver": 0}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict, key: str = SECRET, algorithm: str = "HS256", headers: dict | None = None) -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


@pytest.fixture
def account(system, unique_email):
    email = unique_email()
    system.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    [code] = system.codes_for(email)
    system.client.post("/auth/confirm", json={"email": email, "code": code})
    login = system.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    token = login.json["access_token"]
    return {"id": jwt.decode(token, options={"verify_signature": False})["sub"], "token": token}


def me(system, authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return system.client.get("/auth/me", headers=headers)


def assert_invalid_token(response) -> None:
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_issued_token_is_accepted(system, account):
    assert me(system, f"Bearer {account['token']}").status_code == 200
    header = jwt.get_unverified_header(account["token"])
    assert header["alg"] == "HS256"
    decoded = jwt.decode(account["token"], SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert set(decoded) == {"sub", "iat", "exp", "iss", "aud", "ver"}


def test_alg_none_is_refused(system, account):
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    unsigned = f"{header}.{b64(json.dumps(claims(account['id'])).encode())}."
    assert_invalid_token(me(system, f"Bearer {unsigned}"))


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # the forger's choice of algorithm, not ours
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_another_hmac_algorithm_with_the_right_key_is_refused(system, account, algorithm):
    assert_invalid_token(me(system, f"Bearer {signed(claims(account['id']), algorithm=algorithm)}"))


def test_wrong_signature_is_refused(system, account):
    forged = signed(claims(account["id"]), key="another-secret-that-is-also-long-enough-00")
    assert_invalid_token(me(system, f"Bearer {forged}"))
    header, _, signature = account["token"].split(".")
    # The same account with a longer life: only the signature can tell.
    tampered_payload = b64(json.dumps(claims(account["id"], exp=int(time.time()) + 86400)).encode())
    assert_invalid_token(me(system, f"Bearer {header}.{tampered_payload}.{signature}"))


def test_expired_token_is_refused_past_the_leeway(system, account):
    now = int(time.time())
    within_leeway = signed(claims(account["id"], iat=now - 1000, exp=now - LEEWAY_SECONDS + 3))
    assert me(system, f"Bearer {within_leeway}").status_code == 200
    expired = signed(claims(account["id"], iat=now - 1000, exp=now - LEEWAY_SECONDS - 3))
    assert_invalid_token(me(system, f"Bearer {expired}"))


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "iss", "aud", "ver"])
def test_each_required_claim_missing_is_refused(system, account, missing):
    token = signed(claims(account["id"], **{missing: None}))
    assert_invalid_token(me(system, f"Bearer {token}"))


@pytest.mark.parametrize(("claim", "value"), [("aud", "another-app"), ("iss", "another-issuer")])
def test_wrong_audience_or_issuer_is_refused(system, account, claim, value):
    assert_invalid_token(me(system, f"Bearer {signed(claims(account['id'], **{claim: value}))}"))


@pytest.mark.parametrize("subject", ["", "no-such-user"])
def test_a_subject_that_is_no_account_is_refused(system, subject):
    assert_invalid_token(me(system, f"Bearer {signed(claims(subject))}"))


def test_a_non_string_subject_is_refused(system):
    issuer = TokenIssuer(SECRET, 900, ISSUER, AUDIENCE)
    with pytest.raises(InvalidToken):
        issuer.verify(signed(claims(None) | {"sub": 12345}))


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
