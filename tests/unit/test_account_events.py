"""Account events and the notices they send, on fakes (mongomock, fakeredis, in-memory broker).

The in-memory broker hands an event published under its routing key to the
worker's notification router (bound to the events it mails), as the topic
exchange does; auth's delay queue has no consumer there, so a test plays the
broker's TTL by handing a held ``lock.due`` to auth's queue itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pymongo.errors
import pytest

from auth_service.adapters.users.recovery_links import NOT_ME_LINKS_KEPT
from auth_service.domain.accounts import NotMeLink
from auth_service.domain.devices import KNOWN_DEVICES_KEPT, Device, network_of
from auth_service.domain.lockout import LockoutPolicy, Step, after_failure
from common.messaging.consumer import Outcome
from common.messaging.envelope import Outgoing
from common.messaging.messages import ACCOUNT_EVENTS, LockDue, UserSessionsRevoked
from tests.fakes import as_delivered
from tests.unit.test_lifecycle import NEW_PASSWORD, bearer, reset, reset_code
from tests.unit.test_sessions import PASSWORD, sign_up

LOCKING = {"FAILED_LOGIN_WARNING_THRESHOLD": "3", "LOCKOUT_THRESHOLD": "5", "LOCKOUT_SECONDS": "60"}
SECRET_WORDS = re.compile(r"password|code|token|hash|secret", re.IGNORECASE)


def events(system, name: str | None = None) -> list[Outgoing]:
    """The events auth published, in order (optionally of one routing key)."""
    return [
        delivery.message
        for delivery in system.broker.deliveries
        if delivery.queue.startswith("user.") and (name is None or delivery.queue == name)
    ]


def notices(system, email: str, subject_part: str) -> list:
    return [mail for mail in system.outbox if email in mail.recipients and subject_part in mail.subject]


def log_in(system, email, password=PASSWORD, **headers):
    return system.client.post("/auth/login", json={"email": email, "password": password}, headers=headers)


def held_timers(system) -> list[Outgoing]:
    delay_queue = f"{system.auth_settings.account_confirmed_queue}.delayed"
    return system.broker.sent_to(delay_queue)


def fire(system, timer: Outgoing):
    """The broker's TTL ran out: the timer is dead-lettered into auth's queue."""
    system.broker.publish(system.auth_settings.account_confirmed_queue, timer)
    return system.broker.deliveries[-1].result


@pytest.fixture
def locking(make_system):
    return make_system(LOCKING)


# --- events through the outbox ---


def test_a_lifecycle_publishes_its_events_in_order_each_well_formed_and_free_of_secrets(system, unique_email):
    email, new_email = unique_email(), unique_email()
    response = system.client.post("/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"})
    user_id = response.json["id"]
    [code] = system.codes_for(email)
    assert system.client.post("/auth/confirm", json={"email": email, "code": code}).status_code == 200
    pair = log_in(system, email).json
    changed = system.client.post(
        "/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(pair["access_token"]),
    ).json
    system.client.post(
        "/auth/email/change",
        json={"new_email": new_email, "password": NEW_PASSWORD},
        headers=bearer(changed["access_token"]),
    )
    [change_code] = system.codes_for(new_email)
    confirmed = system.client.post(
        "/auth/email/confirm", json={"code": change_code}, headers=bearer(changed["access_token"])
    )
    assert confirmed.status_code == 200

    published = events(system)
    assert [event.type for event in published] == [
        "user.registered",
        "user.verified",
        "user.password_changed",
        "user.sessions_revoked",
        "user.email_changed",
    ]
    for event in published:
        body = json.loads(event.encoded_body())
        assert body["type"] == event.type and body["event_id"] == event.message_id
        assert datetime.fromisoformat(body["occurred_at"]).utcoffset() == UTC.utcoffset(None)
        assert body["user_id"] == user_id and "locale" in body
        assert not any(SECRET_WORDS.search(key) for key in body), body
        assert PASSWORD not in json.dumps(body) and code not in json.dumps(body)
    registered, _, password_changed, revoked, email_changed = (json.loads(event.encoded_body()) for event in published)
    assert (registered["name"], registered["email"]) == ("Ada", email)
    assert password_changed["reason"] == "change"
    assert (revoked["all"], revoked["reason"]) == (True, "password_changed") and "session_ids" not in revoked
    assert (email_changed["email"], email_changed["old_email"]) == (new_email, email)
    assert system.auth.users.pending_outbox_count() == 0


def test_events_wait_in_the_outbox_while_the_broker_is_away_and_none_is_lost(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    system.broker.up = False
    for _ in range(3):
        assert log_in(system, email, "a wrong password").status_code == 401
    assert events(system, "user.login_failures") == []
    system.broker.up = True
    system.clock.advance(60)
    system.auth.outbox.relay_due()
    assert len(events(system, "user.login_failures")) == 1
    assert len(notices(system, email, "Failed sign-in")) == 1


# --- the worker's notices ---


def test_welcome_once_the_address_is_confirmed_even_if_confirmed_twice(system, unique_email):
    email = unique_email()
    system.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    [code] = system.codes_for(email)
    for _ in range(2):
        assert system.client.post("/auth/confirm", json={"email": email, "code": code}).status_code == 200
    [welcome] = notices(system, email, "Welcome")
    assert welcome.html and "sign in" in welcome.body
    assert len(events(system, "user.verified")) == 1


def test_a_reset_that_proves_a_pending_address_sends_the_welcome(system, unique_email):
    email = unique_email()
    system.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert reset(system, email, reset_code(system, email)).status_code == 200
    assert len(events(system, "user.verified")) == 1
    assert len(notices(system, email, "Welcome")) == 1
    [changed] = events(system, "user.password_changed")
    assert changed.body["reason"] == "reset"
    assert len(notices(system, email, "Your password was changed")) == 1


def test_each_notice_is_sent_once_per_event_even_when_delivered_twice(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    [verified] = events(system, "user.verified")
    again = system.broker.handlers["user.verified"](as_delivered(verified), system.broker)
    assert again.outcome is Outcome.ACK
    assert len(notices(system, email, "Welcome")) == 1


def test_every_mailed_event_has_a_text_and_html_notice_and_its_queue_is_bound_to_it(system):
    from common.messaging.topology import MAILED_EVENTS
    from email_service.handlers import EVENT_NOTICES

    assert {event.TYPE for event in EVENT_NOTICES} == set(MAILED_EVENTS)
    context = {
        "reason": "reset",
        "when": "2026-01-01 00:00 UTC",
        "failures": "3",
        "until": "x",
        "ip": "i",
        "device": "d",
    }
    for template, _ in EVENT_NOTICES.values():
        message = system.mailer.render(template, "a@example.com", context)
        assert message.subject and message.body.strip() and "<html" in message.html, template
        assert not re.search(r"\b\d{6}\b", message.body), template  # nothing that passes for a code


def test_a_malformed_event_is_dead_lettered_not_mailed(system):
    forged = Outgoing(type="user.verified", body={"event_id": "other", "user_id": "u", "email": "a@b.example"})
    result = system.broker.handlers["user.verified"](as_delivered(forged), system.broker)
    assert result.outcome is Outcome.DEAD_LETTER
    assert system.outbox == []


# --- failed logins and locks ---


def test_the_rules_warn_once_and_lock_at_the_thresholds():
    policy = LockoutPolicy(warning_threshold=3, lockout_threshold=5, lockout_seconds=60)
    steps = []
    count = 0
    for _ in range(7):
        failure = after_failure(count, policy)
        steps.append(failure.step)
        count = failure.after
    assert steps == [Step.COUNT, Step.COUNT, Step.WARN, Step.COUNT, Step.LOCK, Step.COUNT, Step.COUNT]


def test_a_warning_at_the_threshold_once_per_streak_and_a_success_starts_a_new_one(locking, unique_email):
    email = unique_email()
    sign_up(locking, email)
    for _ in range(4):
        assert log_in(locking, email, "a wrong password").status_code == 401
    assert [event.body["failures"] for event in events(locking, "user.login_failures")] == [3]
    [warning] = notices(locking, email, "Failed sign-in")
    assert "3 times" in warning.body
    assert log_in(locking, email).status_code == 200
    for _ in range(2):
        log_in(locking, email, "a wrong password")
    assert len(events(locking, "user.login_failures")) == 1  # two in the new streak: below the threshold
    log_in(locking, email, "a wrong password")
    assert len(events(locking, "user.login_failures")) == 2


def test_parallel_failures_cross_each_threshold_exactly_once(locking, unique_email):
    email = unique_email()
    sign_up(locking, email)
    stale = locking.auth.users.by_email(email)  # every call starts from the same, outdated count
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: locking.auth.failed_logins.failed(stale), range(5)))
    assert len(events(locking, "user.login_failures")) == 1
    assert len(events(locking, "user.locked")) == 1
    assert len(held_timers(locking)) == 1


def test_a_lock_refuses_the_right_password_like_a_wrong_one_and_says_how_to_unlock(locking, unique_email):
    email = unique_email()
    sign_up(locking, email)
    wrong = [log_in(locking, email, "a wrong password") for _ in range(5)]
    right = log_in(locking, email)
    assert right.status_code == 401 and right.json == wrong[-1].json
    [locked] = events(locking, "user.locked")
    until = datetime.fromisoformat(locked.body["until"])
    assert 59 <= until.timestamp() - locking.clock() <= 61
    [mail] = notices(locking, email, "locked")
    assert "reset your password" in mail.body and "Forgot password" in mail.body
    # Failures during the lock are refused, not counted: no second lock, no second warning.
    for _ in range(5):
        log_in(locking, email, "a wrong password")
    assert len(events(locking, "user.locked")) == 1


def test_a_lock_costs_the_same_bcrypt_check_as_a_wrong_password(locking, unique_email, monkeypatch):
    email = unique_email()
    sign_up(locking, email)
    for _ in range(5):
        log_in(locking, email, "a wrong password")
    checks = []
    hasher = locking.auth.passwords._hasher
    real_verify = hasher.verify
    monkeypatch.setattr(hasher, "verify", lambda *args: checks.append(1) or real_verify(*args))
    assert log_in(locking, email).status_code == 401
    assert checks == [1]


def test_the_lock_ends_by_time_through_the_brokers_timer_once(locking, unique_email):
    email = unique_email()
    sign_up(locking, email)
    for _ in range(5):
        log_in(locking, email, "a wrong password")
    [timer] = held_timers(locking)
    assert timer.expiration_ms == 60_000 and timer.properties().expiration == "60000"
    assert set(timer.body) == {"user_id", "lock_id"}

    # Early (a clock behind the broker's): not ended, looked at again through the retry ladder.
    assert fire(locking, timer).outcome is Outcome.RETRY
    assert events(locking, "user.unlocked") == []

    locking.clock.advance(61)
    assert log_in(locking, email).status_code == 200  # over by time, whether or not the timer has fired
    assert fire(locking, timer).outcome is Outcome.ACK
    assert fire(locking, timer).outcome is Outcome.ACK  # delivered twice: ended once
    [unlocked] = events(locking, "user.unlocked")
    assert unlocked.body["reason"] == "expired"
    assert len(notices(locking, email, "unlocked")) == 1


def test_a_reset_ends_the_lock_at_once_and_its_timer_then_does_nothing(locking, unique_email):
    email = unique_email()
    sign_up(locking, email)
    for _ in range(5):
        log_in(locking, email, "a wrong password")
    [timer] = held_timers(locking)
    assert reset(locking, email, reset_code(locking, email)).status_code == 200
    assert log_in(locking, email, NEW_PASSWORD).status_code == 200
    [unlocked] = events(locking, "user.unlocked")
    assert unlocked.body["reason"] == "reset"
    locking.clock.advance(61)
    assert fire(locking, timer).outcome is Outcome.ACK
    assert len(events(locking, "user.unlocked")) == 1
    assert len(notices(locking, email, "unlocked")) == 1


def test_a_wrong_password_of_an_unconfirmed_account_warns_nobody(locking, unique_email):
    email = unique_email()
    locking.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    for _ in range(5):
        log_in(locking, email, "a wrong password")
    assert events(locking, "user.login_failures") == events(locking, "user.locked") == []


def test_the_lock_timer_is_a_well_formed_message():
    due = LockDue(user_id="u-1", lock_id="l-1").outgoing(message_id="m", expiration_ms=1000)
    assert LockDue.parse(as_delivered(due)) == LockDue("u-1", "l-1")


# --- new sign-in ---

CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)


def test_a_device_is_its_id_else_its_user_agent_and_network():
    phone = Device("203.0.113.7", "App/1.0 (Phone)")
    assert phone.key == Device("203.0.113.200", "App/1.0 (Phone)").key  # same /24
    assert phone.key != Device("203.0.114.7", "App/1.0 (Phone)").key
    assert phone.key != Device("203.0.113.7", "App/2.0 (Phone)").key
    assert Device("203.0.113.7", "A", "device-1").key == Device("198.51.100.1", "B", "device-1").key
    assert network_of("2001:db8:1:2:3::4") == network_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert network_of("::ffff:203.0.113.7") == "203.0.113.0/24"
    assert Device("203.0.113.7", CHROME_ON_WINDOWS).description == "Chrome 120, Windows 10"
    assert Device("203.0.113.7", SAFARI_ON_IPHONE).description == "Mobile Safari 17, iOS 17"
    # Nothing the client wrote beyond known browser and system names: not an app's name, not a link.
    assert phone.description == "unknown"
    assert Device("203.0.113.7", "evil.example.com/1.0 CFNetwork/1410.0.3 Darwin/22.6.0").description == "iOS 16"
    assert Device("203.0.113.7", CHROME_ON_WINDOWS + " Visit http://evil.example/x").description == (
        "Chrome 120, Windows 10"
    )
    assert Device("203.0.113.7", "\x1b[2Jevil\nagent").description == "unknown"
    assert Device("203.0.113.7").description == "unknown"
    assert len(phone.key) == 64 and "Phone" not in phone.key


def test_a_login_from_a_new_device_is_announced_but_not_the_first_login(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    assert log_in(system, email, **{"User-Agent": "App/1.0 (Phone)"}).status_code == 200
    assert log_in(system, email, **{"User-Agent": "App/1.0 (Phone)"}).status_code == 200
    assert events(system, "user.login_new_device") == []
    assert log_in(system, email, **{"User-Agent": CHROME_ON_WINDOWS}).status_code == 200
    [new] = events(system, "user.login_new_device")
    assert (new.body["ip"], new.body["device"]) == ("127.0.0.1", "Chrome 120, Windows 10")
    [mail] = notices(system, email, "New sign-in")
    assert "127.0.0.1" in mail.body and "Device: Chrome 120, Windows 10" in mail.body and " UTC" in mail.body
    assert "reset your password" in mail.body
    log_in(system, email, **{"User-Agent": CHROME_ON_WINDOWS})
    log_in(system, email, **{"User-Agent": "Other", "X-Device-Id": "app-install-1"})
    log_in(system, email, **{"User-Agent": "Renamed", "X-Device-Id": "app-install-1"})
    assert len(events(system, "user.login_new_device")) == 2


def test_the_most_recent_devices_are_kept(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    for index in range(KNOWN_DEVICES_KEPT + 2):
        log_in(system, email, **{"X-Device-Id": f"device-{index}"})
        system.clock.advance(1)
    document = system.auth.users._users.find_one({"email": email})
    assert len(document["known_devices"]) == KNOWN_DEVICES_KEPT
    assert len(events(system, "user.login_new_device")) == KNOWN_DEVICES_KEPT + 1
    log_in(system, email, **{"X-Device-Id": "device-0"})  # forgotten: the oldest
    log_in(system, email, **{"X-Device-Id": f"device-{KNOWN_DEVICES_KEPT + 1}"})  # still known
    assert len(events(system, "user.login_new_device")) == KNOWN_DEVICES_KEPT + 2


def test_every_event_class_round_trips_through_its_own_parser():
    samples = {
        "user.registered": {"name": "Ada"},
        "user.password_changed": {"reason": "reset"},
        "user.email_changed": {"old_email": "old@example.com"},
        "user.login_failures": {"failures": 3},
        "user.locked": {"until": "2026-01-01T00:00:00Z"},
        "user.unlocked": {"reason": "expired"},
        "user.login_new_device": {"ip": "203.0.113.7", "device": "App"},
        "user.sessions_revoked": {"session_ids": ("s-1", "s-2"), "reason": "logout"},
        "user.disabled": {"reason": "abuse reported", "until": "2026-01-02T00:00:00Z"},
        "user.enabled": {"reason": "expired"},
    }
    for event_class in ACCOUNT_EVENTS:
        event = event_class(
            event_id="e-1",
            occurred_at="2026-01-01T00:00:00Z",
            user_id="u-1",
            email="a@example.com",
            locale=None,
            **samples.get(event_class.TYPE, {}),
        )
        assert event_class.parse(as_delivered(event.outgoing(message_id="e-1"))) == event
    everything = UserSessionsRevoked(
        "e-2", "2026-01-01T00:00:00Z", "u-1", "a@example.com", None, all_sessions=True, reason="not_me"
    )
    assert UserSessionsRevoked.parse(as_delivered(everything.outgoing(message_id="e-2"))) == everything


# --- "this wasn't me" ---

NOT_ME_LINK = re.compile(r"http://\S+/auth/not-me\?token=(\S+)")


def not_me_token(mail) -> str:
    found = NOT_ME_LINK.search(mail.body)
    assert found is not None, f"no 'this wasn't me' link in {mail.subject!r}"
    assert found.group(0) in mail.html
    return found.group(1)


def press(system, token):
    return system.client.post("/auth/not-me", data={"token": token})


def test_a_new_sign_in_notice_carries_a_link_whose_page_does_nothing_and_whose_button_secures_once(
    system, unique_email
):
    email = unique_email()
    sign_up(system, email)
    first = log_in(system, email, **{"User-Agent": "App/1.0"}).json
    log_in(system, email, **{"User-Agent": "Intruder/1.0"})
    token = not_me_token(notices(system, email, "New sign-in")[0])
    user = system.auth.users.by_email(email)
    stored = system.auth.users._users.find_one({"_id": user.id})["not_me"]
    assert [link["digest"] for link in stored] == [hashlib.sha256(token.split(".")[1].encode()).hexdigest()]
    assert token.split(".")[1] not in json.dumps(stored, default=str)  # the hash only

    page = system.client.get(f"/auth/not-me?token={token}")
    assert page.status_code == 200 and "Secure my account" in page.text
    assert system.client.get("/auth/me", headers=bearer(first["access_token"])).status_code == 200

    done = press(system, token)
    assert done.status_code == 200 and "signed out" in done.text
    assert system.client.get("/auth/me", headers=bearer(first["access_token"])).status_code == 401
    refreshed = system.client.post("/auth/token/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 401
    [reset_mail] = [mail for mail in system.outbox if email in mail.recipients and "Reset" in mail.subject]
    code = re.search(r"\b\d{6}\b", reset_mail.body).group(0)
    assert reset(system, email, code).status_code == 200

    assert press(system, token).status_code == 410  # once
    assert system.client.get(f"/auth/not-me?token={token}").status_code == 410
    assert press(system, "not-a-token").status_code == 400


def test_the_password_changed_notice_carries_a_link_that_expires(make_system, unique_email):
    system = make_system({"NOT_ME_TTL_SECONDS": "3600"})
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    changed = system.client.post(
        "/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(pair["access_token"]),
    )
    assert changed.status_code == 200
    token = not_me_token(notices(system, email, "password was changed")[0])
    system.clock.advance(3601)
    assert press(system, token).status_code == 410
    # Nothing was ended: the session goes on (its access token expired meanwhile, by the clock).
    refreshed = system.client.post("/auth/token/refresh", json={"refresh_token": changed.json["refresh_token"]})
    assert refreshed.status_code == 200


def change_address(system, email, moved):
    """Sign up at ``email`` and move the account to ``moved``: its tokens and the notice to the old address."""
    sign_up(system, email)
    pair = log_in(system, email).json
    system.client.post(
        "/auth/email/change", json={"new_email": moved, "password": PASSWORD}, headers=bearer(pair["access_token"])
    )
    [code] = system.codes_for(moved)
    system.client.post("/auth/email/confirm", json={"code": code}, headers=bearer(pair["access_token"]))
    [changed] = [mail for mail in system.outbox if email in mail.recipients and "was changed" in mail.subject]
    return pair, changed


def test_the_address_changed_notice_link_undoes_the_change(system, unique_email):
    email, moved = unique_email(), unique_email()
    pair, changed = change_address(system, email, moved)
    assert "contact support" not in changed.body
    assert press(system, not_me_token(changed)).status_code == 200
    assert system.auth.users.by_email(email) is not None and system.auth.users.by_email(moved) is None
    undone = events(system, "user.email_changed")[-1]
    assert (undone.body["email"], undone.body["old_email"]) == (email, moved)
    reset_codes = [mail for mail in system.outbox if email in mail.recipients and "Reset" in mail.subject]
    assert len(reset_codes) == 1
    assert system.client.get("/auth/me", headers=bearer(pair["access_token"])).status_code == 401
    # The old address is the login again, and the password (which the thief may know) works only after a reset.
    assert log_in(system, email).status_code == 401
    code = re.search(r"\b\d{6}\b", reset_codes[0].body).group(0)
    assert reset(system, email, code).status_code == 200
    assert log_in(system, email, NEW_PASSWORD).status_code == 200


# --- with the second factor (sign-in by emailed code) ---


def test_with_the_second_factor_wrong_passwords_count_and_a_lock_refuses_before_any_code(locking, unique_email):
    from tests.unit.test_sign_in import LAPTOP, PHONE, set_mfa

    email = unique_email()
    sign_up(locking, email)
    assert set_mfa(locking, log_in(locking, email, **PHONE).json["access_token"], True).status_code == 200
    for _ in range(5):
        assert log_in(locking, email, "a wrong password", **LAPTOP).status_code == 401
    assert len(events(locking, "user.login_failures")) == len(events(locking, "user.locked")) == 1
    sign_in_codes_before = len(notices(locking, email, "sign-in code"))
    assert log_in(locking, email, **LAPTOP).status_code == 401  # locked: no challenge, no code
    assert len(notices(locking, email, "sign-in code")) == sign_in_codes_before
    # The device the account signed in from is not kept out by the lock: its challenge comes.
    assert log_in(locking, email, **PHONE).status_code == 202


def test_a_login_that_passes_the_second_factor_from_a_new_device_is_announced(system, unique_email):
    from tests.unit.test_sign_in import LAPTOP, PHONE, set_mfa, sign_in_code, verify_challenge

    email = unique_email()
    sign_up(system, email)
    assert set_mfa(system, log_in(system, email, **PHONE).json["access_token"], True).status_code == 200
    challenge = log_in(system, email, **LAPTOP).json["challenge"]
    assert events(system, "user.login_new_device") == []  # no session yet: only a challenge
    assert verify_challenge(system, challenge, sign_in_code(system, email), headers=LAPTOP).status_code == 200
    [new] = events(system, "user.login_new_device")
    assert new.body["ip"] == "127.0.0.1" and new.body["device"] == "unknown"  # the test client's Werkzeug/...


def test_a_lock_set_while_the_right_password_is_checked_refuses_it(locking, unique_email, monkeypatch):
    email = unique_email()
    sign_up(locking, email)
    hasher = locking.auth.passwords._hasher
    real_verify = hasher.verify

    def verify_while_a_parallel_burst_locks(*args):
        # The parallel wrong guesses read the account before this one's bcrypt ends and lock it.
        for _ in range(5):
            locking.auth.failed_logins.failed(locking.auth.users.by_email(email))
        return real_verify(*args)

    monkeypatch.setattr(hasher, "verify", verify_while_a_parallel_burst_locks)
    response = log_in(locking, email)
    assert response.status_code == 401
    assert len(events(locking, "user.locked")) == 1
    monkeypatch.setattr(hasher, "verify", real_verify)
    assert log_in(locking, email).json == response.json  # the same answer as any refusal during the lock


def test_a_not_me_link_whose_work_failed_half_way_works_on_the_retry(system, unique_email, monkeypatch):
    email, moved = unique_email(), unique_email()
    _, changed = change_address(system, email, moved)
    users = system.auth.users
    # The press restores the address the change left: that write fails once.
    real_restore = users.restore_address
    blips = [pymongo.errors.AutoReconnect("a MongoDB blip")]

    def restore_failing_once(*args, **kwargs):
        if blips:
            raise blips.pop()
        return real_restore(*args, **kwargs)

    monkeypatch.setattr(users, "restore_address", restore_failing_once)
    assert press(system, not_me_token(changed)).status_code == 503
    assert press(system, not_me_token(changed)).status_code == 200  # the owner's retry does it all
    assert users.by_email(email) is not None and users.by_email(moved) is None
    assert len([mail for mail in system.outbox if email in mail.recipients and "Reset" in mail.subject]) == 1
    assert press(system, not_me_token(changed)).status_code == 410


def test_a_flood_of_notices_to_the_new_address_leaves_the_address_change_undoable(system, unique_email):
    email, moved = unique_email(), unique_email()
    _, changed = change_address(system, email, moved)
    for device in range(NOT_ME_LINKS_KEPT + 5):  # whoever moved the address signs in from many devices
        assert log_in(system, moved, **{"X-Device-Id": f"device-{device}"}).status_code == 200
    assert len(notices(system, moved, "New sign-in")) == NOT_ME_LINKS_KEPT + 5
    assert press(system, not_me_token(changed)).status_code == 200
    assert system.auth.users.by_email(email) is not None and system.auth.users.by_email(moved) is None


def test_not_me_links_are_capped_per_mailbox_and_dropped_once_expired(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    users = system.auth.users
    user_id = users.by_email(email).id
    now = datetime.fromtimestamp(system.clock(), UTC)
    soon, later = now + timedelta(seconds=60), now + timedelta(days=7)
    users.add_not_me(user_id, NotMeLink("expiring", "old@example.com", "new_sign_in", soon), now)
    users.add_not_me(user_id, NotMeLink("elsewhere", "old@example.com", "email_changed", later), now)
    for index in range(NOT_ME_LINKS_KEPT + 5):
        users.add_not_me(user_id, NotMeLink(f"flood-{index}", email, "new_sign_in", later), now)
    assert users.not_me(user_id, "elsewhere", now) is not None
    assert users.not_me(user_id, "expiring", now) is not None
    assert users.not_me(user_id, "flood-4", now) is None  # the oldest of the flooded mailbox's
    assert all(users.not_me(user_id, f"flood-{index}", now) for index in range(5, NOT_ME_LINKS_KEPT + 5))
    users.add_not_me(user_id, NotMeLink("next", email, "new_sign_in", later), soon)
    stored = users._users.find_one({"_id": user_id})["not_me"]
    assert "expiring" not in [link["digest"] for link in stored]
    assert len(stored) == 1 + NOT_ME_LINKS_KEPT
