"""Support's actions on the fakes (the admin app of the unit system, a clock the test moves), and the search's
rules: what a search asks MongoDB for, page by page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auth_service.adapters.admin_keys_file import AdminKeysFile
from auth_service.adapters.mongo_users import MongoUserRepository
from auth_service.domain.accounts import UserSearch, user_search
from auth_service.domain.admin_keys import SCOPES, new_key
from auth_service.domain.paging import prefix_range
from auth_service.service_layer.events import rfc3339
from auth_service.service_layer.flows.account_admin import DisableEnd
from common.messaging.messages import DisableDue
from tests.fakes import as_delivered
from tests.unit.test_account_events import events, fire

PASSWORD = "correct horse battery"


def test_a_prefix_is_one_anchored_range_and_an_address_is_matched_whole():
    assert prefix_range("ada") == ("ada", "adb")
    assert prefix_range("") is None
    assert user_search(" Ada@Example.COM ", None, 10) == UserSearch(10, exact="ada@example.com")
    assert user_search("ADA*", "verified", 10, "ada@a.example") == UserSearch(
        10, prefix_range=("ada", "adb"), status="verified", after="ada@a.example"
    )
    assert user_search("*", None, 5) == UserSearch(5)


class Recording:
    """A users collection that records what it is asked (the query, the sort, the limit)."""

    def __init__(self):
        self.asked: list = []

    def find(self, condition):
        self.asked.append(condition)
        return self

    def sort(self, *args):
        self.asked.append(("sort", args))
        return self

    def limit(self, count):
        self.asked.append(("limit", count))
        return iter(())


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        (UserSearch(50, prefix_range=("ada", "adb")), {"email": {"$gte": "ada", "$lt": "adb"}}),
        (
            UserSearch(50, prefix_range=("ada", "adb"), after="ada@x.example"),
            {"email": {"$gte": "ada", "$lt": "adb", "$gt": "ada@x.example"}},
        ),
        (
            UserSearch(50, exact="ada@x.example", status="disabled"),
            {"email": {"$eq": "ada@x.example"}, "disabled": True},
        ),
        (UserSearch(50, status="verified"), {"status": "verified", "disabled": {"$exists": False}}),
    ],
)
def test_a_page_is_a_range_of_an_index_in_address_order_never_a_skip(query, condition):
    repository = MongoUserRepository({"users": Recording()})
    repository.search(query)
    asked = repository._users.asked
    assert asked == [condition, ("sort", ("email", 1)), ("limit", 50)]


@pytest.fixture
def admin(make_system, tmp_path):
    key = new_key("support", SCOPES, datetime.now(UTC))
    AdminKeysFile(tmp_path / "keys").write([key.record])
    system = make_system({"ADMIN_KEYS_FILE": str(tmp_path / "keys")})
    client = system.auth.admin_app.test_client()

    def call(method: str, path: str, **kwargs):
        return client.open(path, method=method, headers={"Authorization": f"Bearer {key.key}"}, **kwargs)

    return system, call


def signed_up(system, email: str) -> tuple[str, dict]:
    user_id = system.client.post("/auth/register", json={"email": email, "password": PASSWORD}).json["id"]
    [code] = system.codes_for(email)
    assert system.client.post("/auth/confirm", json={"email": email, "code": code}).status_code == 200
    pair = system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).json
    return user_id, pair


def disable_timers(system) -> list:
    queue = system.auth_settings.topology.auth.queues[0]
    return [
        message
        for name in (queue.delay_queue, queue.long_delay_queue)
        for message in system.broker.sent_to(name)
        if message.type == DisableDue.TYPE
    ]


def test_a_disable_with_an_end_holds_until_it_and_its_timer_enables_the_account_once(admin):
    system, call = admin
    user_id, pair = signed_up(system, "ada@example.com")
    until = datetime.fromtimestamp(system.clock(), UTC) + timedelta(seconds=30)
    answer = call("POST", f"/admin/users/{user_id}/disable", json={"reason": "spam", "until": until.isoformat()})
    assert answer.status_code == 200 and answer.json["status"] == "disabled"
    assert system.client.get("/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}).status_code == 401
    [disabled] = events(system, "user.disabled")
    assert disabled.body["reason"] == "spam" and disabled.body["until"] == rfc3339(until)
    [timer] = disable_timers(system)
    # A timer no longer than a lock's waits in the locks' delay queue, with the time left as its TTL.
    assert timer.expiration_ms == 30_000

    assert fire(system, timer).outcome.value == "retry"  # early: the disable still holds
    login = system.client.post("/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert (login.status_code, login.json["error"]) == (403, "account_disabled")
    system.clock.advance(31)
    # Past ``until`` the account is open again even before its timer comes.
    assert system.client.post("/auth/login", json={"email": "ada@example.com", "password": PASSWORD}).status_code == 200
    fire(system, timer)
    assert [event.body["reason"] for event in events(system, "user.enabled")] == ["expired"]
    assert (
        system.auth.account_admin.end_expired_disable(user_id, DisableDue.parse(as_delivered(timer)).disable_id)
        is DisableEnd.GONE
    )


def test_a_disable_longer_than_a_lock_waits_in_the_long_queue(admin):
    system, call = admin
    user_id, _ = signed_up(system, "ada@example.com")
    until = datetime.fromtimestamp(system.clock(), UTC) + timedelta(days=3)
    assert (
        call("POST", f"/admin/users/{user_id}/disable", json={"reason": "x", "until": until.isoformat()}).status_code
        == 200
    )
    queue = system.auth_settings.topology.auth.queues[0]
    [timer] = [m for m in system.broker.sent_to(queue.long_delay_queue) if m.type == DisableDue.TYPE]
    assert timer.expiration_ms == 3 * 86400 * 1000
    # Enabled by hand first: the timer's return finds no disable of its own.
    assert call("POST", f"/admin/users/{user_id}/enable").json["status"] == "verified"
    assert fire(system, timer).outcome.value == "ack"  # gone: acked, nothing published
    assert [event.body["reason"] for event in events(system, "user.enabled")] == ["admin"]


def test_a_past_or_far_end_a_naive_time_or_a_missing_reason_is_refused(admin):
    system, call = admin
    user_id, _ = signed_up(system, "ada@example.com")
    now = datetime.fromtimestamp(system.clock(), UTC)
    path = f"/admin/users/{user_id}/disable"

    def disable(body: dict):
        return call("POST", path, json=body)

    assert disable({"reason": "x", "until": (now - timedelta(seconds=1)).isoformat()}).status_code == 409
    assert disable({"reason": "x", "until": "2030-01-01T00:00:00"}).status_code == 422
    assert disable({"reason": "x", "until": (now + timedelta(days=366)).isoformat()}).json["fields"] == {
        "until": ["At most 365 days ahead; leave it out to disable until enabled."]
    }
    assert disable({}).status_code == 422
    assert call("POST", "/admin/users/nobody/disable", json={"reason": "x"}).status_code == 404
    assert events(system, "user.disabled") == []


def test_the_events_of_support_name_the_key_in_the_activity(admin):
    system, call = admin
    user_id, _ = signed_up(system, "ada@example.com")
    call("POST", f"/admin/users/{user_id}/disable", json={"reason": "x"})
    entries = call("GET", f"/admin/audit?user_id={user_id}&type=user.disabled").json["entries"]
    assert [(entry["type"], entry["actor"], entry["user_id"]) for entry in entries] == [
        ("user.disabled", "support", user_id)
    ]


def test_requests_are_limited_per_key_and_without_a_key_per_ip(make_system, tmp_path):
    first, second = (new_key(name, SCOPES, datetime.now(UTC)) for name in ("first", "second"))
    AdminKeysFile(tmp_path / "keys").write([first.record, second.record])
    system = make_system(
        {
            "ADMIN_KEYS_FILE": str(tmp_path / "keys"),
            "RATELIMIT_ENABLED": "true",
            "RATELIMIT_ADMIN_PER_KEY": "3/minute",
            "RATELIMIT_ADMIN_PER_IP": "2/minute",
        }
    )
    client = system.auth.admin_app.test_client()

    def audit(key: str | None) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return client.get("/admin/audit", headers=headers).status_code

    # One budget per key, shared by every endpoint.
    assert [audit(first.key) for _ in range(2)] == [200, 200]
    assert client.get("/admin/users", headers={"Authorization": f"Bearer {first.key}"}).status_code == 200
    refused = client.get("/admin/audit", headers={"Authorization": f"Bearer {first.key}"})
    assert (refused.status_code, refused.json["error"]) == (429, "rate_limited") and refused.headers["Retry-After"]
    assert audit(second.key) == 200
    assert [audit(None) for _ in range(3)] == [401, 401, 429]
    assert audit(second.key) == 200


@pytest.mark.parametrize("keys_file", [None, ""])
def test_without_keys_every_admin_request_is_refused(make_system, tmp_path, keys_file):
    key = new_key("anyone", SCOPES, datetime.now(UTC))
    env = {}
    if keys_file is not None:
        (tmp_path / "keys").write_text(keys_file)
        env["ADMIN_KEYS_FILE"] = str(tmp_path / "keys")
    client = make_system(env).auth.admin_app.test_client()
    answer = client.get("/admin/audit", headers={"Authorization": f"Bearer {key.key}"})
    assert (answer.status_code, answer.json["error"]) == (401, "invalid_token")
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
