"""Sessions that end are refused by /auth/me at once, on this replica and on the others, without
a MongoDB read per request; each end publishes ``user.sessions_revoked``; a session has a last day."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import jwt
import pika
import pytest

from auth_service.domain.sessions import refresh_token_hash
from auth_service.entrypoints.session_ends_listener import SessionEndsListener
from auth_service.service_layer.session_ends import EndedSessions
from common.messaging.messages import UserSessionsRevoked
from tests.fakes import as_delivered
from tests.unit.conftest import build_system
from tests.unit.test_sessions import (
    NEW_PASSWORD,
    PASSWORD,
    assert_invalid_token,
    change,
    login,
    logout,
    me,
    refresh,
    sign_up,
)

NOT_ME_LINK = re.compile(r"http://\S+/auth/not-me\?token=(\S+)")


@pytest.fixture
def account(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    return {"email": email, **login(system, email)}


def revocations(system) -> list[dict]:
    return [json.loads(message.encoded_body()) for message in system.broker.sent_to(UserSessionsRevoked.TYPE)]


def sid(access_token: str) -> str:
    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


def test_logout_refuses_the_access_token_at_once_and_announces_that_session(system, account):
    assert me(system, account["access_token"]).status_code == 200
    assert logout(system, account["refresh_token"]).status_code == 204
    assert_invalid_token(me(system, account["access_token"]))
    [event] = revocations(system)
    assert event["session_ids"] == [sid(account["access_token"])] and event["reason"] == "logout"
    assert event["email"] == account["email"] and "all" not in event
    # Once: logging out again announces nothing more.
    assert logout(system, account["refresh_token"]).status_code == 204
    assert len(revocations(system)) == 1


def test_the_bearer_check_reads_no_session_from_mongodb(system, account, monkeypatch):
    sessions = system.auth.sessions._sessions
    for name in ("session", "find", "ended_since"):
        monkeypatch.setattr(sessions, name, lambda *args, **kwargs: pytest.fail("a session read per request"))
    assert me(system, account["access_token"]).status_code == 200


def test_a_detected_reuse_refuses_the_sessions_access_tokens_and_announces_it(system, account):
    rotated = refresh(system, account["refresh_token"]).json
    system.clock.advance(system.auth_settings.refresh_reuse_grace_seconds + 1)
    assert_invalid_token(refresh(system, account["refresh_token"]))
    assert_invalid_token(me(system, rotated["access_token"]))
    [event] = revocations(system)
    assert (event["session_ids"], event["reason"]) == ([sid(rotated["access_token"])], "reuse_detected")


def test_a_password_change_announces_every_session_of_the_account(system, account):
    other = login(system, account["email"])
    new_pair = change(system, account["access_token"]).json
    assert_invalid_token(me(system, other["access_token"]))
    assert me(system, new_pair["access_token"]).status_code == 200
    [event] = revocations(system)
    assert (event["all"], event["reason"]) == (True, "password_changed")


def test_a_password_reset_announces_every_session_of_the_account(system, account):
    assert system.client.post("/auth/password/forgot", json={"email": account["email"]}).status_code == 202
    code = system.codes_for(account["email"])[-1]
    reset = {"email": account["email"], "code": code, "new_password": NEW_PASSWORD}
    assert system.client.post("/auth/password/reset", json=reset).status_code == 200
    assert_invalid_token(me(system, account["access_token"]))
    [event] = revocations(system)
    assert (event["all"], event["reason"]) == (True, "password_reset")


def test_this_wasnt_me_announces_every_session_of_the_account(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    first = login(system, email)
    system.client.post("/auth/login", json={"email": email, "password": PASSWORD}, headers={"X-Device-Id": "thief"})
    [notice] = [mail for mail in system.outbox if email in mail.recipients and NOT_ME_LINK.search(mail.body)]
    token = NOT_ME_LINK.search(notice.body).group(1)
    assert system.client.post("/auth/not-me", data={"token": token}).status_code == 200
    assert_invalid_token(me(system, first["access_token"]))
    [event] = revocations(system)
    assert (event["all"], event["reason"]) == (True, "not_me")


def test_another_replica_refuses_the_token_once_the_event_reaches_it(system, account):
    """Two replicas on one database: the one that did not end the session learns it from the event
    (here handed over as the broker would), not from a read per request."""
    database = system.auth.users._users.database
    replica = build_system(database=database)
    assert me(replica, account["access_token"]).status_code == 200
    assert logout(system, account["refresh_token"]).status_code == 204
    assert me(replica, account["access_token"]).status_code == 200  # not heard yet: no per-request read
    [published] = system.broker.sent_to(UserSessionsRevoked.TYPE)
    event = UserSessionsRevoked.parse(as_delivered(published))
    replica.auth.sessions.ended.add(event.session_ids)
    assert_invalid_token(me(replica, account["access_token"]))


def test_a_replica_that_starts_later_reads_the_recent_ends_once(system, account):
    assert logout(system, account["refresh_token"]).status_code == 204
    started_later = build_system(database=system.auth.users._users.database)
    assert_invalid_token(me(started_later, account["access_token"]))


def test_an_end_is_forgotten_once_its_last_access_token_has_expired():
    now = [1000.0]
    ended = EndedSessions(remember_seconds=910, clock=lambda: now[0])
    ended.add(["s-1"])
    assert ended.ended("s-1")
    now[0] += 911
    ended.add(["s-2"])  # pruning runs on writes
    assert not ended.ended("s-1") and ended.ended("s-2") and len(ended) == 1


def test_a_session_ends_at_its_maximum_age_however_often_it_is_refreshed(make_system, unique_email):
    system = make_system({"SESSION_MAX_AGE_SECONDS": "3600"})
    email = unique_email()
    sign_up(system, email)
    pair = login(system, email)
    for _ in range(3):
        system.clock.advance(1000)
        pair = refresh(system, pair["refresh_token"]).json
    # 3000 s into the session: the access token stops where the session does, not 900 s on.
    assert pair["expires_in"] == 600
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600
    record = system.auth.users._users.database["refresh_tokens"].find_one(
        {"_id": refresh_token_hash(pair["refresh_token"])}
    )
    assert record["expires_at"].timestamp() == pytest.approx(claims["exp"], abs=1)
    system.clock.advance(601)
    assert_invalid_token(refresh(system, pair["refresh_token"]))


class RecordingChannel:
    def __init__(self):
        self.acked: list[int] = []

    def basic_ack(self, delivery_tag: int) -> None:
        self.acked.append(delivery_tag)


def test_the_listener_adds_the_ids_an_event_names_and_acks_every_delivery():
    ended = EndedSessions(remember_seconds=910)
    listener = SessionEndsListener("amqp://unused", "events", ended, catch_up=lambda: None)
    channel = RecordingChannel()
    event = UserSessionsRevoked("e-1", "2026-01-01T00:00:00Z", "u-1", "a@example.com", None, ("s-1",), reason="logout")
    outgoing = event.outgoing(message_id="e-1")
    properties = pika.BasicProperties(message_id="e-1", content_type="application/json")
    listener._on_message(channel, SimpleNamespace(delivery_tag=1), properties, outgoing.encoded_body())
    everything = UserSessionsRevoked(
        "e-2", "2026-01-01T00:00:00Z", "u-1", "a@example.com", None, all_sessions=True, reason="not_me"
    )
    listener._on_message(
        channel,
        SimpleNamespace(delivery_tag=2),
        pika.BasicProperties(message_id="e-2"),
        everything.outgoing(message_id="e-2").encoded_body(),
    )
    listener._on_message(channel, SimpleNamespace(delivery_tag=3), properties, b"not json")
    assert ended.ended("s-1") and len(ended) == 1
    assert channel.acked == [1, 2, 3]
