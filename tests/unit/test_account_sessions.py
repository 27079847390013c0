"""The account's own sessions (list, end one, end all others) and its security activity, on fakes."""

from __future__ import annotations

from datetime import timedelta

from auth_service.domain.devices import Device, device_label
from tests.unit.test_rate_limits import assert_rate_limited, from_ip, limited
from tests.unit.test_sessions import PASSWORD, assert_invalid_token, refresh, sign_up

PHONE = {"X-Device-Id": "phone-1", "X-Device-Name": "Ada's phone", "User-Agent": "AdaApp/2.1 (iPhone; iOS 17)"}
LAPTOP = {
    "X-Device-Id": "laptop-1",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
}


def login_from(system, email, headers, ip="203.0.113.7") -> dict:
    response = system.client.post(
        "/auth/login", json={"email": email, "password": PASSWORD}, headers=headers, environ_base={"REMOTE_ADDR": ip}
    )
    assert response.status_code == 200, response.json
    return response.json


def bearer(pair: dict, headers: dict | None = None) -> dict:
    return {"Authorization": f"Bearer {pair['access_token']}", **(headers or {})}


def sessions_of(system, pair, headers) -> list[dict]:
    response = system.client.get("/auth/sessions", headers=bearer(pair, headers))
    assert response.status_code == 200, response.json
    return response.json["sessions"]


def two_devices(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    phone = login_from(system, email, PHONE, ip="203.0.113.7")
    system.clock.advance(3)  # pyjwt checks tokens against the real time: the fake clock moves little
    laptop = login_from(system, email, LAPTOP, ip="198.51.100.20")
    return email, phone, laptop


def test_two_devices_list_two_sessions_newest_first_with_labels_ips_and_the_current_one(system, unique_email):
    _, phone, laptop = two_devices(system, unique_email)
    listed = sessions_of(system, phone, PHONE)
    assert [entry["device"] for entry in listed] == [device_label(LAPTOP["User-Agent"]), "Ada's phone"]
    assert [entry["ip"] for entry in listed] == ["198.51.100.20", "203.0.113.7"]
    assert [entry["current"] for entry in listed] == [False, True]
    assert set(listed[0]) == {"id", "device", "ip", "created_at", "last_used_at", "current"}
    assert [entry["current"] for entry in sessions_of(system, laptop, LAPTOP)] == [True, False]


def test_refresh_moves_last_used_and_the_ip_of_its_session_only(system, unique_email):
    _, phone, _ = two_devices(system, unique_email)
    before = {entry["id"]: entry for entry in sessions_of(system, phone, PHONE)}
    system.clock.advance(4)
    refreshed = refresh(system, phone["refresh_token"], environ_base={"REMOTE_ADDR": "203.0.113.99"}).json
    after = {entry["id"]: entry for entry in sessions_of(system, refreshed, PHONE)}
    [phone_id] = [key for key, entry in after.items() if entry["current"]]
    [laptop_id] = [key for key in after if key != phone_id]
    assert after[phone_id]["ip"] == "203.0.113.99"
    assert after[phone_id]["last_used_at"] > before[phone_id]["last_used_at"]
    assert after[phone_id]["created_at"] == before[phone_id]["created_at"]
    assert after[laptop_id] == before[laptop_id]


def test_ending_the_other_session_refuses_its_refresh_token_and_leaves_this_one(system, unique_email):
    _, phone, laptop = two_devices(system, unique_email)
    [other] = [entry for entry in sessions_of(system, phone, PHONE) if not entry["current"]]
    assert system.client.delete(f"/auth/sessions/{other['id']}", headers=bearer(phone, PHONE)).status_code == 204
    assert_invalid_token(refresh(system, laptop["refresh_token"]))
    assert_invalid_token(system.client.get("/auth/me", headers=bearer(laptop)))  # at once
    assert [entry["device"] for entry in sessions_of(system, phone, PHONE)] == ["Ada's phone"]
    assert refresh(system, phone["refresh_token"]).status_code == 200
    again = system.client.delete(f"/auth/sessions/{other['id']}", headers=bearer(phone, PHONE))
    assert again.status_code == 404
    assert again.json["error"] == "not_found"


def test_another_accounts_session_is_not_found_and_stays(system, unique_email):
    _, phone, _ = two_devices(system, unique_email)
    _, mallory, _ = two_devices(system, unique_email)
    [victim_session] = [entry for entry in sessions_of(system, phone, PHONE) if entry["current"]]
    answer = system.client.delete(f"/auth/sessions/{victim_session['id']}", headers=bearer(mallory, PHONE))
    assert answer.status_code == 404
    assert answer.json["error"] == "not_found"
    assert refresh(system, phone["refresh_token"]).status_code == 200
    unknown = system.client.delete("/auth/sessions/" + "0" * 32, headers=bearer(phone, PHONE))
    assert unknown.status_code == 404


def test_ending_all_others_keeps_the_callers_session(system, unique_email):
    email, phone, laptop = two_devices(system, unique_email)
    tablet = login_from(system, email, {"X-Device-Id": "tablet-1", "User-Agent": "Mozilla/5.0 (iPad) Safari/604.1"})
    assert system.client.delete("/auth/sessions", headers=bearer(phone, PHONE)).status_code == 204
    for ended in (laptop, tablet):
        assert_invalid_token(refresh(system, ended["refresh_token"]))
        assert_invalid_token(system.client.get("/auth/me", headers=bearer(ended)))
    [left] = sessions_of(system, phone, PHONE)
    assert left["current"] and left["device"] == "Ada's phone"
    assert refresh(system, phone["refresh_token"]).status_code == 200


def test_sessions_need_a_valid_token(system):
    for method, path in (("get", "/auth/sessions"), ("delete", "/auth/sessions"), ("delete", "/auth/sessions/x")):
        assert_invalid_token(getattr(system.client, method)(path, headers={"Authorization": "Bearer nope"}))
    assert_invalid_token(system.client.get("/auth/account/activity"))


def test_sessions_ended_by_a_password_change_leave_the_list(system, unique_email):
    _, phone, _ = two_devices(system, unique_email)
    changed = system.client.post(
        "/auth/password/change",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase 7"},
        headers=bearer(phone, PHONE),
    )
    assert changed.status_code == 200
    listed = sessions_of(system, changed.json, PHONE)
    assert [(entry["device"], entry["current"]) for entry in listed] == [("Ada's phone", True)]


def test_a_session_is_named_by_the_apps_name_for_the_device_else_by_its_user_agents_label():
    assert Device("203.0.113.7", LAPTOP["User-Agent"], name="  Ada's\x00 iPhone ").label == "Ada's iPhone"
    assert Device("203.0.113.7", LAPTOP["User-Agent"]).label == device_label(LAPTOP["User-Agent"])
    assert Device("203.0.113.7", LAPTOP["User-Agent"], name="   ").label == device_label(LAPTOP["User-Agent"])
    assert len(Device("203.0.113.7", name="x" * 1000).label) == 100


def activity_of(system, pair) -> list[dict]:
    response = system.client.get("/auth/account/activity", headers=bearer(pair))
    assert response.status_code == 200, response.json
    return response.json["events"]


def test_activity_shows_logins_failures_changes_and_session_ends_newest_first(system, unique_email):
    email, phone, _ = two_devices(system, unique_email)
    system.clock.advance(1)
    wrong = system.client.post(
        "/auth/login",
        json={"email": email, "password": "wrong password"},
        headers=LAPTOP,
        environ_base={"REMOTE_ADDR": "192.0.2.66"},
    )
    assert wrong.status_code == 401
    system.clock.advance(1)
    [other] = [entry for entry in sessions_of(system, phone, PHONE) if not entry["current"]]
    system.client.delete(
        f"/auth/sessions/{other['id']}", headers=bearer(phone, PHONE), environ_base={"REMOTE_ADDR": "203.0.113.7"}
    )
    events = activity_of(system, phone)
    kinds = [event["type"] for event in events]
    assert kinds[:2] == ["user.sessions_revoked", "user.login_failed"]
    # An event's time has whole seconds (its body's occurred_at): the laptop's login and its
    # new-device event fall in one second, in either order.
    assert set(kinds[2:4]) == {"user.login", "user.login_new_device"}
    assert kinds.count("user.login") == 2
    assert "user.verified" in kinds and "user.registered" in kinds
    ended, failed = events[:2]
    [new_device] = [event for event in events if event["type"] == "user.login_new_device"]
    assert (ended["ip"], ended["device"]) == ("203.0.113.7", "Ada's phone")
    assert (failed["ip"], failed["device"]) == ("192.0.2.66", device_label(LAPTOP["User-Agent"]))
    assert (new_device["ip"], new_device["device"]) == ("198.51.100.20", device_label(LAPTOP["User-Agent"]))
    times = [event["occurred_at"] for event in events]
    assert times == sorted(times, reverse=True)


def test_an_event_still_in_the_outbox_is_in_the_activity_once_and_moves_to_the_store_once(system, unique_email):
    email, phone, _ = two_devices(system, unique_email)
    user = system.auth.users.by_email(email)
    stored = {event["type"] for event in activity_of(system, phone)}
    assert "user.verified" in stored
    # The broker is away: a lock's event stays in the outbox, and shows all the same.
    system.broker.up = False
    try:
        for _ in range(system.auth_settings.lockout_threshold):
            system.client.post("/auth/login", json={"email": email, "password": "wrong password"})
    finally:
        system.broker.up = True
    assert any(entry.queue == "user.locked" for entry in system.auth.users.outbox_entries(user.id))
    assert [event["type"] for event in activity_of(system, phone)].count("user.locked") == 1
    system.clock.advance(30)
    assert system.auth.outbox.relay_due() >= 1
    assert system.auth.users.outbox_entries(user.id) == []
    assert [event["type"] for event in activity_of(system, phone)].count("user.locked") == 1


def test_activity_older_than_the_retention_is_not_shown(make_system, unique_email):
    system = make_system({"AUDIT_RETENTION_DAYS": "1"})
    _, phone, _ = two_devices(system, unique_email)
    assert activity_of(system, phone)
    user_id = system.auth.sessions.token_subject(phone["access_token"])
    system.clock.advance(timedelta(days=1, seconds=10).total_seconds())
    assert system.auth.activity.recent(user_id) == []


def test_account_pages_are_rate_limited_per_ip(make_system, unique_email):
    system = make_system(limited(account_pages_per_ip="3/hour"))
    _, phone, _ = two_devices(system, unique_email)
    for _ in range(3):
        assert (
            system.client.get(
                "/auth/sessions", headers=bearer(phone, PHONE), environ_base=from_ip("192.0.2.1")
            ).status_code
            == 200
        )
    assert_rate_limited(
        system.client.get("/auth/account/activity", headers=bearer(phone), environ_base=from_ip("192.0.2.1"))
    )
