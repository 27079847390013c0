"""Leaving, on fakes: deletion with a grace period and its restore link, the erasure, and the export.

Includes the thief's stories for the restore link (a recovery control): the thief holds the password,
a session and a mailbox of their own.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime

import pytest

from auth_service.adapters.account_keys import account_key_hashes
from auth_service.service_layer.flows.export import SPECS, Nested, Secret
from common.messaging.messages import DeletionDue
from tests.fakes import as_delivered
from tests.unit.test_account_events import not_me_token, press
from tests.unit.test_sessions import PASSWORD, assert_invalid_token, refresh, sign_up

GRACE = 3600
THIEF_PASSWORD = "the thief's own new pass 9"
RESTORE_LINK = re.compile(r"http://\S+/auth/account/restore\?token=(\S+)")


@pytest.fixture
def leaving(make_system):
    return make_system({"ACCOUNT_DELETION_GRACE_SECONDS": str(GRACE)})


def log_in(system, email, password=PASSWORD, **headers):
    return system.client.post("/auth/login", json={"email": email, "password": password}, headers=headers)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def mails(system, email, subject):
    return [mail for mail in system.outbox if email in mail.recipients and mail.subject == subject]


def code_in(mail) -> str:
    found = re.search(r"\b\d{6}\b", mail.body)
    assert found is not None
    return found.group(0)


def ask_deletion(system, access_token, password=PASSWORD):
    return system.client.post("/auth/account/delete", json={"password": password}, headers=bearer(access_token))


def confirm_deletion(system, access_token, email):
    system.cooldown_clock.advance(3600)  # past the cooldown of the code asked for just before
    assert ask_deletion(system, access_token).status_code == 202
    code = code_in(mails(system, email, "Confirm the deletion of your account")[-1])
    return system.client.post("/auth/account/delete/confirm", json={"code": code}, headers=bearer(access_token))


def restore_token(system, email) -> str:
    [*_, notice] = mails(system, email, "Your account will be deleted")
    found = RESTORE_LINK.search(notice.body)
    assert found is not None and found.group(0) in notice.html
    return found.group(1)


def fire_timers(system) -> list:
    """The broker's delay queue handing every deletion timer back (their TTL ran out)."""
    queue = system.auth_settings.topology.auth.queues[0].long_delay_queue
    router = system.broker.handlers[system.auth_settings.account_confirmed_queue]
    return [router(as_delivered(message), system.broker) for message in system.broker.sent_to(queue)]


def events(system, routing_key):
    return system.broker.sent_to(routing_key)


def stored_anywhere(system, needles: list[str]) -> list[str]:
    """Every MongoDB document and Redis key or value of the run that holds one of ``needles``."""
    found = []
    database = system.auth.users._users.database  # the fakes' own store: the test reads it directly
    for name in database.list_collection_names():
        for document in database[name].find():
            text = json.dumps(document, default=str)
            found += [f"{name}: {needle}" for needle in needles if needle in text]
    for key in system.redis.scan_iter():
        kind = system.redis.type(key)
        value = system.redis.hgetall(key) if kind == b"hash" else system.redis.dump(key)
        text = f"{key!r} {value!r}"
        found += [f"redis {key!r}" for needle in needles if needle in text]
    return found


def test_deletion_end_to_end_pending_restore_delete_again_erase_and_register_again(leaving, unique_email):
    system = leaving
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    user_id = system.auth.sessions.token_subject(pair["access_token"])
    assert ask_deletion(system, pair["access_token"], "a wrong password").status_code == 401

    confirmed = confirm_deletion(system, pair["access_token"], email)
    assert confirmed.status_code == 200, confirmed.json
    assert confirmed.json["status"] == "pending_deletion"
    delete_after = datetime.fromisoformat(confirmed.json["delete_after"])
    assert abs(delete_after.timestamp() - (system.clock() + GRACE)) < 2
    # Every session ends; the right password answers 403, a wrong one 401 as ever.
    assert_invalid_token(system.client.get("/auth/me", headers=bearer(pair["access_token"])))
    assert_invalid_token(refresh(system, pair["refresh_token"]))
    pending = log_in(system, email)
    assert (pending.status_code, pending.json["error"]) == (403, "account_pending_deletion")
    assert log_in(system, email, "a wrong password").status_code == 401

    # The notice's link: a page that does nothing, a button that restores, once.
    first_link = restore_token(system, email)
    assert system.client.get(f"/auth/account/restore?token={first_link}").status_code == 200
    assert log_in(system, email).status_code == 403
    assert system.client.post("/auth/account/restore", data={"token": first_link}).status_code == 200
    assert system.client.post("/auth/account/restore", data={"token": first_link}).status_code == 410
    again = log_in(system, email)
    assert again.status_code == 200
    fire_timers(system)  # the restored deletion's timer finds nothing to do
    assert system.auth.users.by_id(user_id) is not None

    assert confirm_deletion(system, again.json["access_token"], email).json["status"] == "pending_deletion"
    # The first deletion's link is spent and belongs to it: it keeps nothing now.
    assert system.client.get(f"/auth/account/restore?token={first_link}").status_code == 410
    assert system.client.post("/auth/account/restore", data={"token": first_link}).status_code == 410
    system.clock.advance(GRACE + 1)
    fire_timers(system)

    assert system.auth.users.by_id(user_id) is None
    [farewell] = mails(system, email, "Your account was deleted")
    assert "erased" in farewell.body
    [deleted] = events(system, "user.deleted")
    assert set(deleted.body) == {"event_id", "occurred_at", "user_id"}
    assert deleted.body["user_id"] == user_id and deleted.message_id == deleted.body["event_id"]
    needles = [user_id, email, *account_key_hashes(email, user_id), hashlib.sha256(email.encode()).hexdigest()]
    assert stored_anywhere(system, needles) == []
    assert system.client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201


def test_a_redelivered_timer_and_an_erasure_killed_half_way_erase_once(leaving, unique_email, monkeypatch):
    system = leaving
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    user_id = system.auth.sessions.token_subject(pair["access_token"])
    confirm_deletion(system, pair["access_token"], email)
    system.clock.advance(GRACE + 1)
    activity = system.auth.deletion._stores.activity
    real_erase = activity.erase

    def killed(user_id):
        raise ConnectionError("the process died here")

    monkeypatch.setattr(activity, "erase", killed)
    with pytest.raises(ConnectionError):
        fire_timers(system)
    assert system.auth.users.by_id(user_id) is not None  # the anchor stays until the end
    assert log_in(system, email).status_code == 403
    monkeypatch.setattr(activity, "erase", real_erase)
    fire_timers(system)  # redelivered: the rest is done
    fire_timers(system)  # and again: nothing left to do
    assert system.auth.users.by_id(user_id) is None
    assert len(events(system, "user.deleted")) == 1
    assert len(mails(system, email, "Your account was deleted")) == 1
    assert stored_anywhere(system, [user_id, email]) == []


def test_a_timer_before_the_grace_ends_waits(leaving, unique_email):
    system = leaving
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    confirm_deletion(system, pair["access_token"], email)
    [result] = fire_timers(system)
    assert result.outcome.value == "retry"
    assert system.auth.users.by_email(email).pending_deletion


def test_with_no_grace_the_account_is_erased_at_once(make_system, unique_email):
    system = make_system({"ACCOUNT_DELETION_GRACE_SECONDS": "0"})
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    user_id = system.auth.sessions.token_subject(pair["access_token"])
    answer = confirm_deletion(system, pair["access_token"], email)
    assert answer.status_code == 200 and answer.json["status"] == "deleted"
    assert system.auth.users.by_id(user_id) is None
    assert mails(system, email, "Your account will be deleted") == []  # no grace: no link to keep it
    assert len(mails(system, email, "Your account was deleted")) == 1
    assert stored_anywhere(system, [user_id, email]) == []
    assert fire_timers(system)[0].outcome.value == "ack"


def test_deletion_codes_are_their_own_purpose(leaving, unique_email):
    system = leaving
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    assert ask_deletion(system, pair["access_token"]).status_code == 202
    assert ask_deletion(system, pair["access_token"]).status_code == 429  # the cooldown, per purpose
    code = code_in(mails(system, email, "Confirm the deletion of your account")[-1])
    wrong = system.client.post(
        "/auth/account/delete/confirm",
        json={"code": "000000" if code != "000000" else "111111"},
        headers=bearer(pair["access_token"]),
    )
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_code"
    # A deletion code is no reset code.
    reset = system.client.post(
        "/auth/password/reset", json={"email": email, "code": code, "new_password": THIEF_PASSWORD}
    )
    # Refused as any wrong reset code is (a decoy judges an address with no live reset code): nothing changes.
    assert (reset.status_code, reset.json["error"]) in {(400, "invalid_code"), (410, "code_expired")}
    assert log_in(system, email, THIEF_PASSWORD).status_code == 401
    assert system.auth.users.by_email(email).verified and not system.auth.users.by_email(email).pending_deletion


def change_address(system, access_token, new_email, password=PASSWORD):
    asked = system.client.post(
        "/auth/email/change", json={"new_email": new_email, "password": password}, headers=bearer(access_token)
    )
    assert asked.status_code == 202, asked.json
    [code_mail] = mails(system, new_email, "Confirm your new email address")
    done = system.client.post("/auth/email/confirm", json={"code": code_in(code_mail)}, headers=bearer(access_token))
    assert done.status_code == 200, done.json


def test_a_thief_who_deletes_the_account_cannot_keep_the_owner_from_restoring_it(leaving, unique_email):
    """The thief has the password, a session and a mailbox of their own: they move the address to their
    mailbox, ask for the deletion and confirm it with the code mailed there. The owner's "this wasn't me"
    link (the address-change notice, mailed to the owner) takes the address back and ends that deletion."""
    system = leaving
    owner, thief_mailbox = unique_email(), unique_email()
    sign_up(system, owner)
    user_id = system.auth.users.by_email(owner).id
    thief = log_in(system, owner).json
    change_address(system, thief["access_token"], thief_mailbox)
    [changed_notice] = mails(system, owner, "Your account's email address was changed")
    assert confirm_deletion(system, thief["access_token"], thief_mailbox).json["status"] == "pending_deletion"
    thiefs_restore_link = restore_token(system, thief_mailbox)

    assert press(system, not_me_token(changed_notice)).status_code == 200
    user = system.auth.users.by_id(user_id)
    assert user.email == owner and not user.pending_deletion
    system.clock.advance(GRACE + 1)
    fire_timers(system)
    assert system.auth.users.by_id(user_id) is not None  # nothing erased
    # The thief's link of that deletion keeps nothing, and their session is over.
    assert system.client.post("/auth/account/restore", data={"token": thiefs_restore_link}).status_code == 410
    assert_invalid_token(refresh(system, thief["refresh_token"]))
    # The owner chooses a new password with the code the link mailed, and signs in.
    [reset_mail] = [mail for mail in system.outbox if owner in mail.recipients and "Reset" in mail.subject]
    reset = system.client.post(
        "/auth/password/reset", json={"email": owner, "code": code_in(reset_mail), "new_password": THIEF_PASSWORD}
    )
    assert reset.status_code == 200
    assert log_in(system, owner, THIEF_PASSWORD).status_code == 200
    assert log_in(system, owner).status_code == 401  # the password the thief knew is gone


def test_a_thief_cannot_undo_a_deletion_the_owner_confirmed(leaving, unique_email):
    """The owner deletes the account. The thief holds the password, a session opened before, a "this wasn't
    me" link mailed to their own mailbox while it was the account's address, and a restore link of the
    thief's own earlier deletion: none of it keeps the account or signs them in."""
    system = leaving
    owner, thief_mailbox = unique_email(), unique_email()
    sign_up(system, owner)
    user_id = system.auth.users.by_email(owner).id
    thief = log_in(system, owner).json
    change_address(system, thief["access_token"], thief_mailbox)
    [changed_notice] = mails(system, owner, "Your account's email address was changed")
    # While the address is theirs, the thief collects a security notice's link in their own mailbox...
    from tests.unit.test_sign_in import set_mfa

    assert set_mfa(system, thief["access_token"], True).status_code == 200
    assert set_mfa(system, thief["access_token"], False).status_code == 200
    [thiefs_not_me, _] = [mail for mail in system.outbox if thief_mailbox in mail.recipients and "not-me" in mail.body]
    # ...and a restore link of a deletion they confirm themselves.
    confirm_deletion(system, thief["access_token"], thief_mailbox)
    thiefs_restore_link = restore_token(system, thief_mailbox)
    # The owner takes the account back, then deletes it with the code mailed to their own address.
    assert press(system, not_me_token(changed_notice)).status_code == 200
    [reset_mail] = [mail for mail in system.outbox if owner in mail.recipients and "Reset" in mail.subject]
    owners_password = "the owner's fresh pass 4"
    reset = system.client.post(
        "/auth/password/reset", json={"email": owner, "code": code_in(reset_mail), "new_password": owners_password}
    )
    assert reset.status_code == 200, reset.json
    owner_pair = log_in(system, owner, owners_password).json
    thief_session = log_in(system, owner, owners_password).json  # say the thief learns this password too
    system.cooldown_clock.advance(3600)
    assert ask_deletion(system, owner_pair["access_token"], owners_password).status_code == 202
    code = code_in(mails(system, owner, "Confirm the deletion of your account")[-1])
    done = system.client.post(
        "/auth/account/delete/confirm", json={"code": code}, headers=bearer(owner_pair["access_token"])
    )
    assert done.json["status"] == "pending_deletion"

    assert system.client.post("/auth/account/restore", data={"token": thiefs_restore_link}).status_code == 410
    press(system, not_me_token(thiefs_not_me))  # whatever it does, it keeps no deletion it did not undo
    assert system.auth.users.by_id(user_id).pending_deletion
    assert log_in(system, owner, owners_password).status_code == 403
    assert_invalid_token(refresh(system, thief_session["refresh_token"]))
    system.clock.advance(GRACE + 1)
    fire_timers(system)
    assert system.auth.users.by_id(user_id) is None


def test_the_restore_link_expires_with_the_grace(leaving, unique_email):
    system = leaving
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    confirm_deletion(system, pair["access_token"], email)
    token = restore_token(system, email)
    system.clock.advance(GRACE + 1)
    assert system.client.get(f"/auth/account/restore?token={token}").status_code == 410
    assert system.client.post("/auth/account/restore", data={"token": token}).status_code == 410
    assert system.client.get("/auth/account/restore?token=not-a-token").status_code == 400


# --- the export ---


def rich_account(system, unique_email):
    """An account with a second factor, two sessions, a lock, an address change, activity, a stored ask."""
    from tests.unit.test_sign_in import set_mfa

    email, moved = unique_email(), unique_email()
    sign_up(system, email)
    phone = log_in(system, email, **{"X-Device-Id": "phone", "X-Device-Name": "Ada's phone"}).json
    log_in(system, email, **{"X-Device-Id": "laptop", "User-Agent": "Mozilla/5.0 (X11; Linux) Firefox/133.0"})
    change_address(system, phone["access_token"], moved)
    assert set_mfa(system, phone["access_token"], True).status_code == 200
    assert log_in(system, moved, **{"X-Device-Id": "tablet"}).status_code == 202  # a sign-in challenge
    # An ask for a reset code, stored until the relay acts on it (the fixture runs no relay).
    assert system.client.post("/auth/password/forgot", json={"email": moved}).status_code == 202
    for _ in range(system.auth_settings.lockout_threshold):
        log_in(system, moved, "a wrong password")
    user = system.auth.users.by_email(moved)
    assert user.locked_until is not None
    return moved, phone, user.id


def stored_paths(document, prefix="") -> set[str]:
    paths = set()
    for key, value in document.items():
        path = f"{prefix}{key}"
        paths.add(path)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and key not in ("body", "context"):
                paths |= stored_paths(item, f"{path}.")
    return paths


def decided_paths(spec, prefix="") -> tuple[set[str], set[str]]:
    exported, secret = set(), set()
    for key, rule in spec.items():
        path = f"{prefix}{key}"
        if isinstance(rule, Secret):
            secret.add(path)
        elif isinstance(rule, Nested):
            exported.add(path)
            inner_exported, inner_secret = decided_paths(rule.spec, f"{path}.")
            exported |= inner_exported
            secret |= inner_secret
        else:
            exported.add(path)
    return exported, secret


def test_every_stored_field_of_a_rich_account_is_exported_or_on_the_secret_list(make_system, unique_email):
    system = make_system(resend_requested=lambda: None)
    email, phone, user_id = rich_account(system, unique_email)
    database = system.auth.users._users.database
    unknown, secrets_seen = [], {}
    for collection, spec in SPECS.items():
        exported, secret = decided_paths(spec)
        query = (
            {"email": email} if collection == "resend_requests" else {"$or": [{"_id": user_id}, {"user_id": user_id}]}
        )
        documents = list(database[collection].find(query))
        assert documents, f"the rich account has nothing in {collection}"
        for document in documents:
            for path in stored_paths(document):
                if path not in exported and path not in secret:
                    unknown.append(f"{collection}.{path}")
            for path in secret:
                value = _value_at(document, path)
                if value:
                    secrets_seen[f"{collection}.{path}"] = value
    assert unknown == [], "stored fields neither exported nor on the secret list"
    assert {"users.password_hash", "sessions.device_key", "refresh_tokens._id", "users.known_devices.key"} <= set(
        secrets_seen
    )

    answer = system.client.post(
        "/auth/account/export", json={"password": PASSWORD}, headers=bearer(phone["access_token"])
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"] == 'attachment; filename="account-export.json"'
    text = answer.get_data(as_text=True)
    document = json.loads(text)
    for value in secrets_seen.values():
        for piece in value if isinstance(value, list) else [value]:
            assert str(piece) not in text
    assert "$2b$" not in text  # no bcrypt hash of any kind
    assert document["profile"]["email_address"] == email
    assert document["second_factor"]["code_by_email_at_sign_in"] is True
    assert document["sign_in_protection"]["locked_until"] and document["sign_in_protection"]["lock_id"]
    assert document["status_and_dates"]["email_address_changed_at"]
    assert {session["device"] for session in document["sessions"]} == {"Ada's phone", "Firefox 133, Linux"}
    assert {"user.login", "user.email_changed", "user.locked", "user.login_failed", "user.mfa_enabled"} <= {
        entry["what"] for entry in document["activity"]
    }
    assert document["codes_asked_for_by_address"] and "language" in document


def _value_at(document, path):
    head, _, rest = path.partition(".")
    value = document.get(head)
    if not rest:
        return value
    if isinstance(value, list):
        return [inner for item in value if isinstance(item, dict) for inner in [_value_at(item, rest)] if inner]
    return _value_at(value, rest) if isinstance(value, dict) else None


def test_the_export_needs_the_password(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    wrong = system.client.post(
        "/auth/account/export", json={"password": "not it"}, headers=bearer(pair["access_token"])
    )
    assert wrong.status_code == 401 and wrong.json["error"] == "invalid_credentials"
    assert_invalid_token(system.client.post("/auth/account/export", json={"password": PASSWORD}))


def test_timers_of_deletions_go_to_the_long_delay_queue(leaving, unique_email):
    system = leaving
    email = unique_email()
    sign_up(system, email)
    confirm_deletion(system, log_in(system, email).json["access_token"], email)
    queue = system.auth_settings.topology.auth.queues[0]
    [timer] = system.broker.sent_to(queue.long_delay_queue)
    assert timer.type == DeletionDue.TYPE and timer.expiration_ms == GRACE * 1000
    assert system.broker.sent_to(queue.delay_queue) == []  # where the locks' ends wait, unblocked


def test_no_way_in_while_the_deletion_waits(leaving, unique_email):
    """Every way to sign in refuses an account waiting for its erasure: the password (with or without the
    second factor), a sign-in code, a reset code."""
    system = leaving
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    confirm_deletion(system, pair["access_token"], email)
    mails_before = len(system.outbox)
    assert system.client.post("/auth/login/code", json={"email": email}).status_code == 202
    assert system.client.post("/auth/password/forgot", json={"email": email}).status_code == 202
    assert len(system.outbox) == mails_before  # no sign-in code, no reset code
    refused = log_in(system, email, **{"X-Device-Id": "another"})
    assert (refused.status_code, refused.json["error"]) == (403, "account_pending_deletion")
    assert system.client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 409


def test_a_restore_that_wins_the_race_with_the_erasure_keeps_the_account(leaving, unique_email, monkeypatch):
    """A deletion ended (here by a "this wasn't me" link that took the address back) between the erasure's
    read of the account and its first write: the erasure stops, nothing is erased or announced."""
    system = leaving
    email = unique_email()
    sign_up(system, email)
    pair = log_in(system, email).json
    user_id = system.auth.sessions.token_subject(pair["access_token"])
    confirm_deletion(system, pair["access_token"], email)
    users = system.auth.users
    begin = users.begin_erasure

    def restored_first(*args, **kwargs):
        assert system.auth.deletion.cancel_proved_by(user_id, email)
        return begin(*args, **kwargs)

    monkeypatch.setattr(users, "begin_erasure", restored_first)
    system.clock.advance(GRACE + 1)
    [result] = fire_timers(system)
    assert result.outcome.value == "ack"
    assert users.by_id(user_id) is not None and not users.by_id(user_id).pending_deletion
    assert log_in(system, email).status_code == 200
    assert mails(system, email, "Your account was deleted") == []
    assert events(system, "user.deleted") == []
