"""Refresh, reuse detection, logout and password change on the real processes (waitress, pika,
RabbitMQ, Redis, the worker mailing the codes), through HTTP only.

No test waits for the grace window to pass: a retry inside it is tried on the shared stack, whose
window (the default ten seconds) is far longer than the test takes, and a reuse on a stack without
a window. Where the window ends is a rule of time, tested on a clock the tests move
(tests/unit/test_sessions.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.test_contract_flow import PASSWORD, confirm, emailed_codes, login, new_email, register

NEW_PASSWORD = "a brand new passphrase 7"


@pytest.fixture(scope="module")
def no_grace_stack(start_module_stack):
    """A stack without a grace window: any second use of a refresh token is a reuse."""
    return start_module_stack(REFRESH_REUSE_GRACE_SECONDS="0")


def signed_in(stack) -> tuple[str, dict]:
    email = new_email()
    assert register(stack, email)[0] == 201
    [code] = emailed_codes(stack, email)
    assert confirm(stack, email, code)[0] == 200
    status, headers, pair = login(stack, email)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    return email, pair


def refresh(stack, refresh_token):
    return stack.call("POST", "/auth/token/refresh", {"refresh_token": refresh_token})


def me(stack, access_token):
    return stack.call("GET", "/auth/me", headers={"Authorization": f"Bearer {access_token}"})


def assert_invalid_token(answer) -> None:
    status, headers, body = answer
    assert (status, body["error"]) == (401, "invalid_token"), body
    assert headers["Cache-Control"] == "no-store"


def assert_pair(answer) -> dict:
    status, headers, body = answer
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["refresh_token"] and body["access_token"]
    assert headers["Cache-Control"] == "no-store"
    return body


def test_refresh_rotates_and_answers_a_retry_in_the_grace_window(stack):
    email, pair = signed_in(stack)

    rotated = assert_pair(refresh(stack, pair["refresh_token"]))
    assert rotated["refresh_token"] != pair["refresh_token"]
    assert me(stack, rotated["access_token"])[2]["email"] == email
    retried = assert_pair(refresh(stack, pair["refresh_token"]))  # a client that lost the answer
    assert retried["refresh_token"] != rotated["refresh_token"]
    newest = assert_pair(refresh(stack, retried["refresh_token"]))
    assert me(stack, newest["access_token"])[2]["email"] == email
    assert_pair(refresh(stack, rotated["refresh_token"]))  # both answers go on


def test_a_reuse_ends_the_session_of_every_token_from_that_login_and_no_other(no_grace_stack):
    stack = no_grace_stack
    email, pair = signed_in(stack)
    other_device = login(stack, email)[2]

    rotated = assert_pair(refresh(stack, pair["refresh_token"]))
    newest = assert_pair(refresh(stack, rotated["refresh_token"]))
    assert_invalid_token(refresh(stack, pair["refresh_token"]))  # the stolen first token, used again
    assert_invalid_token(refresh(stack, newest["refresh_token"]))
    assert_invalid_token(refresh(stack, rotated["refresh_token"]))
    assert_pair(refresh(stack, other_device["refresh_token"]))


def test_parallel_refreshes_of_one_token_on_waitress_in_the_grace_window_are_all_answered(stack):
    _, pair = signed_in(stack)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: refresh(stack, pair["refresh_token"]), range(6)))
    tokens = {assert_pair(answer)["refresh_token"] for answer in answers}
    assert len(tokens) == 6  # one rotation, five retries inside the grace window, each with its own token
    # All of one session: its logout ends every one of them.
    assert stack.call("POST", "/auth/logout", {"refresh_token": tokens.pop()})[0] == 204
    for token in tokens:
        assert_invalid_token(refresh(stack, token))


def test_parallel_refreshes_of_one_token_on_waitress_without_grace_rotate_it_once_and_end_the_session(
    no_grace_stack,
):
    stack = no_grace_stack
    _, pair = signed_in(stack)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: refresh(stack, pair["refresh_token"]), range(6)))
    statuses = sorted(status for status, _, _ in answers)
    # The five that lose are reuse and end the session; the winner is answered if it finished first.
    assert statuses in ([200] + [401] * 5, [401] * 6)
    for status, _, body in answers:
        if status == 200:
            assert_invalid_token(refresh(stack, body["refresh_token"]))
        else:
            assert body["error"] == "invalid_token"
    assert_invalid_token(refresh(stack, pair["refresh_token"]))


def test_logout_ends_the_session_and_answers_204_for_any_token(stack):
    email, pair = signed_in(stack)
    other_device = login(stack, email)[2]
    status, headers, body = stack.call("POST", "/auth/logout", {"refresh_token": pair["refresh_token"]})
    assert (status, body, headers["Cache-Control"]) == (204, None, "no-store")
    assert_invalid_token(refresh(stack, pair["refresh_token"]))
    assert_pair(refresh(stack, other_device["refresh_token"]))

    assert stack.call("POST", "/auth/logout", {"refresh_token": "no-such-token"})[0] == 204
    status, _, body = stack.call("POST", "/auth/logout", {"refresh_token": 42})
    assert (status, body["error"]) == (422, "validation_error")
    assert "refresh_token" in body["fields"]


def test_password_change_refuses_every_earlier_token_and_the_new_pair_works(stack):
    email, pair = signed_in(stack)
    other_device = login(stack, email)[2]
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}

    status, _, body = stack.call(
        "POST", "/auth/password/change", {"current_password": "not it", "new_password": NEW_PASSWORD}, bearer
    )
    assert (status, body["error"]) == (401, "invalid_credentials")
    status, _, body = stack.call(
        "POST", "/auth/password/change", {"current_password": PASSWORD, "new_password": "short"}, bearer
    )
    assert (status, body["error"]) == (422, "validation_error") and "new_password" in body["fields"]

    new_pair = assert_pair(
        stack.call(
            "POST", "/auth/password/change", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, bearer
        )
    )
    for old in (pair, other_device):
        assert_invalid_token(me(stack, old["access_token"]))
        assert_invalid_token(refresh(stack, old["refresh_token"]))
    assert me(stack, new_pair["access_token"])[0] == 200
    rotated = assert_pair(refresh(stack, new_pair["refresh_token"]))
    assert me(stack, rotated["access_token"])[0] == 200

    assert login(stack, email)[0] == 401
    assert login(stack, email, NEW_PASSWORD)[0] == 200
