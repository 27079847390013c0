"""The whole flow on the real processes at LOG_LEVEL=DEBUG, then every log line searched for secrets.

Both services run as they do in production (waitress, pika, RabbitMQ, Redis)
through ``LocalStack``, on queues and key prefixes of this run's own. The
passwords (old and new), every code (sent or guessed), the access and refresh tokens and both keys are
fresh per run, so a match can only come from a log line that leaked them.
"""

from __future__ import annotations

import http.client
import re
import secrets
import uuid

import pytest

from devtools.stack import LocalStack, delete_run, http_form, http_json, preflight, unique_names
from tests.integration.conftest import RABBITMQ_URL, REDIS_URL

pytestmark = pytest.mark.integration


def fresh_key(label: str) -> str:
    return f"{label}-{secrets.token_urlsafe(32)}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    problems = preflight(RABBITMQ_URL, REDIS_URL)
    if problems:
        pytest.fail("\n".join(problems))
    names = unique_names("secrets")
    secret_values = {
        "JWT_SECRET": fresh_key("jwt"),
        "CODE_HMAC_KEY": fresh_key("hmac"),
    }
    overrides = {
        **names,
        **secret_values,
        "RABBITMQ_URL": RABBITMQ_URL,
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "DEBUG",
        "BCRYPT_ROUNDS": "4",
        "RESEND_COOLDOWN_SECONDS": "0",
        "RATELIMIT_ENABLED": "true",
        "ACCOUNT_DELETION_GRACE_SECONDS": str(DELETION_GRACE_SECONDS),
    }
    stack = LocalStack(tmp_path_factory.mktemp("logs"), overrides)
    try:
        stack.start()
        yield stack, dict(secret_values)
    finally:
        stack.stop()
        delete_run(RABBITMQ_URL, names, redis_url=REDIS_URL)


def walk_the_flow(stack: LocalStack) -> dict[str, list[str]]:
    """Register, guess, resend, confirm, log in, read the profile, refresh, change the password,
    log out; returns the secrets it used."""
    email = f"secrets-{uuid.uuid4().hex[:10]}@example.com"
    password = f"pw {secrets.token_urlsafe(12)}"
    wrong_password = f"wrong {secrets.token_urlsafe(12)}"

    assert stack.call("POST", "/auth/register", {"email": email, "password": password, "name": "Ada"})[0] == 201
    [first] = stack.sink.wait_for(email, count=1, timeout=20)
    assert first.code is not None
    wrong_code = f"{(int(first.code) + 1) % 1_000_000:06d}"
    status, _, body = stack.call("POST", "/auth/confirm", {"email": email, "code": wrong_code})
    assert (status, body["error"]) == (400, "invalid_code")

    assert stack.call("POST", "/auth/resend-code", {"email": email})[0] == 202
    mails = stack.sink.wait_for(email, count=2, timeout=20)
    codes = [mail.code for mail in mails if mail.code is not None]
    assert len(codes) == len(mails) == 2
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": codes[-1]})[0] == 200

    assert stack.call("POST", "/auth/login", {"email": email, "password": wrong_password})[0] == 401
    unknown = f"nobody-{uuid.uuid4().hex[:10]}@example.com"
    assert stack.call("POST", "/auth/login", {"email": unknown, "password": password})[0] == 401
    status, headers, body = stack.call("POST", "/auth/login", {"email": email, "password": password})
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    token = body["access_token"]
    refresh_tokens = [body["refresh_token"]]
    assert stack.call("GET", "/auth/me", headers={"Authorization": f"Bearer {token}"})[0] == 200
    assert stack.call("GET", "/auth/me", headers={"Authorization": f"Bearer {token}x"})[0] == 401

    # Refresh, a reuse, a logout, and a password change, wrong and right.
    status, _, rotated = stack.call("POST", "/auth/token/refresh", {"refresh_token": refresh_tokens[0]})
    assert status == 200
    refresh_tokens.append(rotated["refresh_token"])
    assert stack.call("POST", "/auth/token/refresh", {"refresh_token": refresh_tokens[0]})[0] == 200
    assert stack.call("POST", "/auth/token/refresh", {"refresh_token": f"{refresh_tokens[1]}x"})[0] == 401
    new_password = f"new pw {secrets.token_urlsafe(12)}"
    bearer = {"Authorization": f"Bearer {rotated['access_token']}"}
    change = {"current_password": wrong_password, "new_password": new_password}
    assert stack.call("POST", "/auth/password/change", change, bearer)[0] == 401
    change["current_password"] = password
    status, _, changed = stack.call("POST", "/auth/password/change", change, bearer)
    assert status == 200
    refresh_tokens.append(changed["refresh_token"])
    assert stack.call("POST", "/auth/token/refresh", {"refresh_token": refresh_tokens[1]})[0] == 401
    assert stack.call("POST", "/auth/logout", {"refresh_token": changed["refresh_token"]})[0] == 204
    return {
        "password": [password, wrong_password, new_password],
        "code": [*codes, wrong_code],
        "access token": [token, rotated["access_token"], changed["access_token"]],
        "refresh token": refresh_tokens,
    }


def walk_the_lifecycle(stack: LocalStack) -> dict[str, list[str]]:
    """Confirm by link, forgot and reset (a wrong code, then the right one), change the address
    (a wrong password, then the right one) and confirm it; returns the secrets it used."""
    email = f"lifecycle-{uuid.uuid4().hex[:10]}@example.com"
    new_email = f"moved-{uuid.uuid4().hex[:10]}@example.com"
    password = f"pw {secrets.token_urlsafe(12)}"
    reset_password = f"reset pw {secrets.token_urlsafe(12)}"
    assert stack.call("POST", "/auth/register", {"email": email, "password": password})[0] == 201
    [verification] = stack.sink.wait_for(email, count=1, timeout=20)
    link = re.search(r"http://\S+/auth/verify\?token=(\S+)", verification.text)
    assert link is not None and verification.code is not None
    link_token = link.group(1)
    assert http_json("GET", link.group(0))[0] == 200
    assert http_form(f"{stack.base_url}/auth/verify", {"token": link_token})[0] == 200

    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    # The verification, the welcome (in either order with the forgot), then the reset code.
    reset_code = [mail.code for mail in stack.sink.wait_for(email, count=3, timeout=20) if mail.code][-1]
    assert reset_code is not None
    wrong_code = f"{(int(reset_code) + 1) % 1_000_000:06d}"
    reset = {"email": email, "code": wrong_code, "new_password": reset_password}
    assert stack.call("POST", "/auth/password/reset", reset)[0] == 400
    reset["code"] = reset_code
    assert stack.call("POST", "/auth/password/reset", reset)[0] == 200

    status, _, pair = stack.call("POST", "/auth/login", {"email": email, "password": reset_password})
    assert status == 200
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    change = {"new_email": new_email, "password": password}  # the password from before the reset
    assert stack.call("POST", "/auth/email/change", change, bearer)[0] == 401
    change["password"] = reset_password
    assert stack.call("POST", "/auth/email/change", change, bearer)[0] == 202
    [change_code] = [mail.code for mail in stack.sink.wait_for(new_email, count=1, timeout=20)]
    assert change_code is not None
    assert stack.call("POST", "/auth/email/confirm", {"code": change_code}, bearer)[0] == 200
    return {
        "password": [password, reset_password],
        "code": [verification.code, reset_code, wrong_code, change_code],
        "link token": [link_token, link_token.split(".", 1)[1]],
        "access token": [pair["access_token"]],
        "refresh token": [pair["refresh_token"]],
    }


def walk_sign_in(stack: LocalStack) -> dict[str, list[str]]:
    """Turn the second factor on (a wrong password, then the right one), log in to a challenge,
    guess its code, complete it, then sign in without a password; returns the secrets it used."""
    email = f"sign-in-{uuid.uuid4().hex[:10]}@example.com"
    password = f"pw {secrets.token_urlsafe(12)}"
    wrong_password = f"wrong {secrets.token_urlsafe(12)}"
    assert stack.call("POST", "/auth/register", {"email": email, "password": password})[0] == 201
    registration_code = stack.sink.wait_for(email, count=1, timeout=20)[0].code
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": registration_code})[0] == 200
    status, _, pair = stack.call("POST", "/auth/login", {"email": email, "password": password})
    assert status == 200
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert stack.call("POST", "/auth/mfa", {"enabled": True, "password": wrong_password}, bearer)[0] == 401
    assert stack.call("POST", "/auth/mfa", {"enabled": True, "password": password}, bearer)[0] == 200

    device = {"X-Device-Id": f"device-{uuid.uuid4().hex[:8]}"}
    status, _, body = stack.call("POST", "/auth/login", {"email": email, "password": password}, device)
    assert status == 202
    challenge = body["challenge"]
    sign_in_code = codes_in(stack, email, "sign-in code", 1)[-1]
    assert sign_in_code is not None
    wrong_code = f"{(int(sign_in_code) + 1) % 1_000_000:06d}"
    verify = {"challenge": challenge, "code": wrong_code}
    assert stack.call("POST", "/auth/login/verify", verify, device)[0] == 400
    verify["code"] = sign_in_code
    status, _, second = stack.call("POST", "/auth/login/verify", verify, device)
    assert status == 200

    # Sign-in without a password is for accounts without the second factor.
    second_bearer = {"Authorization": f"Bearer {second['access_token']}"}
    assert stack.call("POST", "/auth/mfa", {"enabled": False, "password": password}, second_bearer)[0] == 200
    assert stack.call("POST", "/auth/login/code", {"email": email})[0] == 202
    passwordless_code = codes_in(stack, email, "sign-in code", 2)[-1]
    assert passwordless_code is not None
    status, _, third = stack.call("POST", "/auth/login/code/verify", {"email": email, "code": passwordless_code})
    assert status == 200
    return {
        "password": [password, wrong_password],
        "code": [registration_code or "", sign_in_code, wrong_code, passwordless_code],
        "challenge": [challenge],
        "access token": [pair["access_token"], second["access_token"], third["access_token"]],
        "refresh token": [pair["refresh_token"], second["refresh_token"], third["refresh_token"]],
    }


DELETION_GRACE_SECONDS = 3


def walk_leaving(stack: LocalStack) -> dict[str, list[str]]:
    """Two sessions listed and one ended, the activity, an export (a wrong password, then the right one),
    a deletion (a wrong password, a wrong code, the right one), its restore link, a deletion again and
    its erasure; returns the secrets it used."""
    email = f"leaving-{uuid.uuid4().hex[:10]}@example.com"
    password = f"pw {secrets.token_urlsafe(12)}"
    wrong_password = f"wrong {secrets.token_urlsafe(12)}"
    assert stack.call("POST", "/auth/register", {"email": email, "password": password})[0] == 201
    registration_code = stack.sink.wait_for(email, count=1, timeout=20)[0].code
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": registration_code})[0] == 200
    phone = {"X-Device-Id": f"phone-{uuid.uuid4().hex[:8]}", "X-Device-Name": "Ada's phone"}
    pairs = [stack.call("POST", "/auth/login", {"email": email, "password": password}, phone)[2]]
    pairs.append(stack.call("POST", "/auth/login", {"email": email, "password": password})[2])
    bearer = {"Authorization": f"Bearer {pairs[0]['access_token']}", **phone}
    status, _, listed = stack.call("GET", "/auth/sessions", headers=bearer)
    assert status == 200 and len(listed["sessions"]) == 2
    [other] = [session for session in listed["sessions"] if not session["current"]]
    assert stack.call("DELETE", f"/auth/sessions/{other['id']}", headers=bearer)[0] == 204
    assert stack.call("GET", "/auth/account/activity", headers=bearer)[0] == 200
    assert stack.call("POST", "/auth/account/export", {"password": wrong_password}, bearer)[0] == 401
    assert stack.call("POST", "/auth/account/export", {"password": password}, bearer)[0] == 200

    assert stack.call("POST", "/auth/account/delete", {"password": wrong_password}, bearer)[0] == 401
    assert stack.call("POST", "/auth/account/delete", {"password": password}, bearer)[0] == 202
    deletion_code = codes_in(stack, email, "deletion", 1)[-1]
    assert deletion_code is not None
    wrong_code = f"{(int(deletion_code) + 1) % 1_000_000:06d}"
    assert stack.call("POST", "/auth/account/delete/confirm", {"code": wrong_code}, bearer)[0] == 400
    status, _, pending = stack.call("POST", "/auth/account/delete/confirm", {"code": deletion_code}, bearer)
    assert (status, pending["status"]) == (200, "pending_deletion")
    [notice] = mails_in(stack, email, "will be deleted", 1)
    restore = re.search(r"http://\S+/auth/account/restore\?token=(\S+)", notice.text)
    assert restore is not None
    assert http_form(f"{stack.base_url}/auth/account/restore", {"token": restore.group(1)})[0] == 200
    status, _, again = stack.call("POST", "/auth/login", {"email": email, "password": password})
    assert status == 200
    bearer = {"Authorization": f"Bearer {again['access_token']}"}
    assert stack.call("POST", "/auth/account/delete", {"password": password}, bearer)[0] == 202
    second_code = codes_in(stack, email, "deletion", 2)[-1]
    assert second_code is not None
    assert stack.call("POST", "/auth/account/delete/confirm", {"code": second_code}, bearer)[0] == 200
    # The grace runs out: the account is erased and its last email goes.
    mails_in(stack, email, "was deleted", 1)
    return {
        "password": [password, wrong_password],
        "code": [registration_code or "", deletion_code, wrong_code, second_code],
        "link token": [restore.group(1), restore.group(1).split(".", 1)[1]],
        "access token": [pair["access_token"] for pair in [*pairs, again]],
        "refresh token": [pair["refresh_token"] for pair in [*pairs, again]],
    }


def codes_in(stack: LocalStack, email: str, subject_part: str, count: int) -> list[str | None]:
    """The codes of the first ``count`` mails whose subject has ``subject_part``; other mails (the welcome,
    the second factor's notice) may arrive in between."""
    return [mail.code for mail in mails_in(stack, email, subject_part, count)]


def mails_in(stack: LocalStack, email: str, subject_part: str, count: int) -> list:
    """The first ``count`` mails to ``email`` whose subject has ``subject_part``, waiting for them."""
    mails = stack.sink.wait_for(email, timeout=20)
    while len([mail for mail in mails if subject_part in mail.subject]) < count:
        more = stack.sink.wait_for(email, count=len(mails) + 1, timeout=20)
        assert len(more) > len(mails), f"no mail '{subject_part}' to {email}: {[mail.subject for mail in more]}"
        mails = more
    return [mail for mail in mails if subject_part in mail.subject][:count]


def test_a_chunked_body_over_the_cap_is_413_on_the_real_server(run):
    stack, _ = run
    connection = http.client.HTTPConnection("127.0.0.1", stack.auth_port, timeout=10)
    try:
        connection.putrequest("POST", "/auth/login")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        chunk = b'{"email": "' + b"a" * 64 * 1024 + b'"}'
        connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
        response = connection.getresponse()
        assert response.status == 413
        assert b'"payload_too_large"' in response.read()
    finally:
        connection.close()


def test_no_secret_reaches_a_log_line(run):
    stack, keys = run
    used = walk_the_flow(stack)
    for walk in (walk_the_lifecycle, walk_sign_in, walk_leaving):
        for kind, values in walk(stack).items():
            used[kind] = used.get(kind, []) + values
    # Stopped before reading, so that every line is flushed; the fixture stops the mail sink.
    assert stack.auth.stop() == 0
    assert stack.worker.stop() == 0
    logs = {"auth": stack.auth.log_text(), "worker": stack.worker.log_text()}
    assert "code sent" in logs["worker"]
    assert "auth service listening" in logs["auth"]

    wanted = {**used, "JWT_SECRET": [keys["JWT_SECRET"]], "CODE_HMAC_KEY": [keys["CODE_HMAC_KEY"]]}
    leaks = []
    for service, text in logs.items():
        for number, line in enumerate(text.splitlines(), 1):
            for kind, values in wanted.items():
                for value in values:
                    # Codes are matched as whole numbers, so that hex ids and timestamps cannot collide.
                    pattern = rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])" if kind == "code" else None
                    if (pattern and re.search(pattern, line)) or (not pattern and value in line):
                        leaks.append(f"{service}.log:{number}: {kind}")
    assert not leaks, leaks
