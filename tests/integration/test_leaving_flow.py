"""Sessions and leaving on the real processes: waitress, the worker, RabbitMQ (its delay queue), Redis, SMTP.

The auth service runs in this test's process, served by waitress on a port of
its own exactly as ``python -m auth_service`` serves it (the same
``bootstrap.build``, ``make_server`` and background threads): with
``MONGO_URI=mongomock://`` its database lives in the process that runs it,
and only so can the test read every document left after an erasure. The
email worker is a process of its own, as deployed. Everything the test does
to the service goes through HTTP or the broker.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from auth_service import bootstrap
from auth_service.adapters.account_keys import account_key_hashes
from auth_service.config import Settings as AuthSettings
from auth_service.domain.devices import device_label
from auth_service.entrypoints.server import make_server
from devtools.stack import LocalStack, Service, delete_run, http_form, unique_names
from tests.integration.conftest import BASE_OVERRIDES, RABBITMQ_URL, REDIS_URL
from tests.integration.erasing_worker import KILLED_EXIT_CODE
from tests.integration.test_account_events_flow import OtherService
from tests.integration.test_contract_flow import PASSWORD, new_email

GRACE_SECONDS = 4
RESTORE_LINK = re.compile(r"http://\S+/auth/account/restore\?token=(\S+)")
PHONE = {"X-Device-Id": "phone-1", "X-Device-Name": "Ada's phone", "User-Agent": "AdaApp/2.1 (iPhone; iOS 17)"}
LAPTOP = {"X-Device-Id": "laptop-1", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0"}
TABLET = {"X-Device-Id": "tablet-1", "User-Agent": "Mozilla/5.0 (iPad; CPU OS 17_0) Safari/604.1"}


@dataclass
class Run:
    stack: LocalStack
    system: bootstrap.AuthSystem
    names: dict[str, str]

    def call(self, method, path, body=None, headers=None):
        return self.stack.call(method, path, body, headers)

    def restart_worker(self, module: str = "email_service") -> Service:
        """Stop the worker and start ``module`` in its place (the same settings)."""
        self.stack.worker.stop()
        self.stack.worker = Service(module, self.stack.env, self.stack.worker.log_path)
        return self.stack.worker.start()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[Run]:
    names = unique_names("leave")
    overrides = {
        **BASE_OVERRIDES,
        **names,
        "ACCOUNT_DELETION_GRACE_SECONDS": str(GRACE_SECONDS),
        # Limits on, so that the run has counters that name the account for the erasure to find.
        "RATELIMIT_ENABLED": "true",
        "RESEND_COOLDOWN_SECONDS": "0",
        "WORKER_PROCESSES": "1",
    }
    stack = LocalStack(tmp_path_factory.mktemp("leaving"), overrides)
    stack.sink.start()
    stack.env["SMTP_PORT"] = str(stack.sink.port)
    stack.worker.start()
    system = bootstrap.build(AuthSettings.from_env(stack.env))
    system.start_background()
    server = make_server(system.app, AuthSettings.from_env(stack.env))
    serving = threading.Thread(target=server.run, name="waitress", daemon=True)
    serving.start()
    try:
        stack.wait_ready()
        yield Run(stack, system, names)
    finally:
        server.close()
        system.stop_background(10)
        stack.worker.stop()
        stack.sink.stop()
        delete_run(RABBITMQ_URL, names, redis_url=REDIS_URL)


@pytest.fixture
def other_service(run) -> Iterator[OtherService]:
    service = OtherService(run.names["ACCOUNT_EVENTS_EXCHANGE"])
    yield service
    service.close()


def bearer(pair: dict, device: dict | None = None) -> dict:
    return {"Authorization": f"Bearer {pair['access_token']}", **(device or {})}


def mails_with(run: Run, email: str, subject_part: str, count: int = 1, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while True:
        found = [mail for mail in run.stack.sink.mails_to(email) if subject_part in mail.subject]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"no '{subject_part}' mail to {email}: {run.stack.sink.mails_to(email)}"
            return found
        time.sleep(0.05)


def signed_up(run: Run) -> str:
    email = new_email()
    assert run.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    [mail] = mails_with(run, email, "Confirm")
    assert run.call("POST", "/auth/confirm", {"email": email, "code": mail.code})[0] == 200
    return email


def log_in(run: Run, email: str, device: dict | None = None, password: str = PASSWORD):
    return run.call("POST", "/auth/login", {"email": email, "password": password}, device)


def signed_in(run: Run, email: str, device: dict) -> dict:
    status, _, pair = log_in(run, email, device)
    assert status == 200, pair
    return pair


def refresh(run: Run, pair: dict):
    return run.call("POST", "/auth/token/refresh", {"refresh_token": pair["refresh_token"]})


def sessions(run: Run, pair: dict, device: dict) -> list[dict]:
    status, _, body = run.call("GET", "/auth/sessions", headers=bearer(pair, device))
    assert status == 200, body
    return body["sessions"]


def test_a_user_with_two_devices_lists_two_sessions_ends_the_other_then_all_others(run):
    email = signed_up(run)
    phone = signed_in(run, email, PHONE)
    laptop = signed_in(run, email, LAPTOP)
    listed = sessions(run, phone, PHONE)
    assert [(entry["device"], entry["ip"], entry["current"]) for entry in listed] == [
        (device_label(LAPTOP["User-Agent"]), "127.0.0.1", False),
        ("Ada's phone", "127.0.0.1", True),
    ]
    other = listed[0]["id"]
    assert run.call("DELETE", f"/auth/sessions/{other}", headers=bearer(phone, PHONE))[0] == 204
    status, _, body = refresh(run, laptop)
    assert (status, body["error"]) == (401, "invalid_token")
    assert run.call("GET", "/auth/me", headers=bearer(laptop))[0] == 401  # its access token too, at once
    assert run.call("GET", "/auth/me", headers=bearer(phone))[0] == 200
    assert run.call("DELETE", f"/auth/sessions/{other}", headers=bearer(phone, PHONE))[0] == 404

    tablet = signed_in(run, email, TABLET)
    laptop = signed_in(run, email, LAPTOP)
    assert len(sessions(run, phone, PHONE)) == 3
    assert run.call("DELETE", "/auth/sessions", headers=bearer(phone, PHONE))[0] == 204
    for ended in (tablet, laptop):
        assert refresh(run, ended)[0] == 401
        assert run.call("GET", "/auth/me", headers=bearer(ended))[0] == 401
    [left] = sessions(run, phone, PHONE)
    assert left["current"] and left["device"] == "Ada's phone"
    assert refresh(run, phone)[0] == 200

    status, _, activity = run.call("GET", "/auth/account/activity", headers=bearer(phone))
    kinds = [event["type"] for event in activity["events"]]
    # One user.sessions_revoked per session ended (the event every service hears), with this request's
    # IP and device. An event's time has whole seconds: within one second it may sort after a login.
    revoked = [event for event in activity["events"] if event["type"] == "user.sessions_revoked"]
    assert len(revoked) == 3
    assert all((event["ip"], event["device"]) == ("127.0.0.1", "Ada's phone") for event in revoked)
    assert kinds.count("user.login") == 4
    assert all(event["ip"] == "127.0.0.1" for event in activity["events"] if event["type"] == "user.login")


def traces_of(run: Run, needles: list[str]) -> list[str]:
    """Every document of the run's MongoDB, and every Redis key of the run (name and content), naming a needle."""
    found = []
    database = run.system.users._users.database  # the in-process store: readable from this process only
    for collection in database.list_collection_names():
        for document in database[collection].find():
            text = json.dumps(document, default=str)
            found += [f"mongodb {collection}" for needle in needles if needle in text]
    client = redis.Redis.from_url(REDIS_URL)
    for pattern in (f"{run.names['REDIS_KEY_PREFIX']}:*", f"*{run.names['RATELIMIT_KEY_PREFIX']}*"):
        for key in client.scan_iter(match=pattern):
            kind = client.type(key)
            if kind == b"hash":
                content = repr(client.hgetall(key))
            elif kind == b"zset":
                content = repr(client.zrange(key, 0, -1))
            elif kind == b"string":
                content = repr(client.get(key))
            else:
                content = repr(client.dump(key))
            found += [f"redis {key!r}" for needle in needles if needle in f"{key!r} {content}"]
    return found


def needles_of(email: str, user_id: str) -> list[str]:
    return [email, user_id, hashlib.sha256(email.encode()).hexdigest(), *account_key_hashes(email, user_id)]


def user_deleted_events(service: OtherService, timeout: float = 20) -> list[dict]:
    """The ``user.deleted`` events the bound queue has seen, waiting up to ``timeout`` for a first one."""
    deadline = time.monotonic() + timeout
    while True:
        bodies = service.wait_for(len(service.seen) + 1, timeout=0.5)
        deleted = [body for body in bodies if body["type"] == "user.deleted"]
        if deleted or time.monotonic() > deadline:
            return deleted


def delete(run: Run, pair: dict, email: str, codes_before: int) -> dict:
    assert run.call("POST", "/auth/account/delete", {"password": PASSWORD}, bearer(pair))[0] == 202
    code = mails_with(run, email, "deletion", count=codes_before + 1)[-1].code
    status, _, body = run.call("POST", "/auth/account/delete/confirm", {"code": code}, bearer(pair))
    assert status == 200, body
    return body


def test_deletion_end_to_end_restore_delete_again_erasure_leaves_nothing(run, other_service):
    email = signed_up(run)
    pair = signed_in(run, email, PHONE)
    user_id = run.call("GET", "/auth/me", headers=bearer(pair))[2]["id"]
    started = time.monotonic()
    assert delete(run, pair, email, 0)["status"] == "pending_deletion"
    status, _, body = log_in(run, email, PHONE)
    assert (status, body["error"]) == (403, "account_pending_deletion")
    assert refresh(run, pair)[0] == 401

    [notice] = mails_with(run, email, "will be deleted")
    link = RESTORE_LINK.search(notice.text)
    assert link is not None
    assert run.call("GET", f"/auth/account/restore?token={link.group(1)}")[0] == 200
    assert http_form(f"{run.stack.base_url}/auth/account/restore", {"token": link.group(1)})[0] == 200
    time.sleep(max(0.0, GRACE_SECONDS + 1 - (time.monotonic() - started)))  # the first deletion's timer is spent
    pair = signed_in(run, email, PHONE)
    # While the account exists the scan finds it: its documents, auth's counters and the worker's codes.
    before = traces_of(run, needles_of(email, user_id))
    assert any(trace.startswith("mongodb users") for trace in before)
    assert any(run.names["RATELIMIT_KEY_PREFIX"] in trace for trace in before)
    assert any(run.names["REDIS_KEY_PREFIX"] in trace for trace in before)

    assert delete(run, pair, email, 1)["status"] == "pending_deletion"
    assert http_form(f"{run.stack.base_url}/auth/account/restore", {"token": link.group(1)})[0] == 410
    mails_with(run, email, "was deleted", timeout=GRACE_SECONDS + 30)
    [event] = user_deleted_events(other_service)
    assert set(event) == {"type", "event_id", "occurred_at", "user_id"} and event["user_id"] == user_id
    # The worker forgets the address on its own time: wait for its keys to go, then look everywhere.
    deadline = time.monotonic() + 20
    while traces_of(run, needles_of(email, user_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert traces_of(run, needles_of(email, user_id)) == []
    assert run.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201


def test_a_worker_killed_while_forgetting_the_address_forgets_it_all_when_redelivered(run, other_service):
    email = signed_up(run)
    pair = signed_in(run, email, PHONE)
    user_id = run.call("GET", "/auth/me", headers=bearer(pair))[2]["id"]
    # A reset code waiting in Redis besides the deletion's: keys of two purposes to forget.
    assert run.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    mails_with(run, email, "Reset")
    dying = run.restart_worker("tests.integration.erasing_worker")
    delete(run, pair, email, 0)
    deadline = time.monotonic() + GRACE_SECONDS + 30
    while dying.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dying.exit_code() == KILLED_EXIT_CODE
    assert traces_of(run, needles_of(email, user_id)) != []  # half of the worker's keys are still there
    run.restart_worker()
    deadline = time.monotonic() + 30
    while traces_of(run, needles_of(email, user_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert traces_of(run, needles_of(email, user_id)) == []
    assert len(mails_with(run, email, "was deleted")) == 1
    assert user_deleted_events(other_service)
    time.sleep(1)  # a second copy of the event, had the erasure announced itself twice, would be here by now
    assert [body["user_id"] for body in user_deleted_events(other_service)] == [user_id]


NOT_ME_LINK = re.compile(r"http://\S+/auth/not-me\?token=(\S+)")


def test_a_thief_who_deletes_the_account_is_undone_by_the_owners_not_me_link(run):
    """The thief holds the password, a session and a mailbox of their own. They move the address to their
    mailbox and delete the account with the code mailed there. The owner's "this wasn't me" link (in the
    address-change notice mailed to the owner) takes the address back and ends that deletion: the grace
    passes and nothing is erased; the thief's restore link keeps nothing; the owner resets the password."""
    owner = signed_up(run)
    thief_mailbox = new_email()
    thief = signed_in(run, owner, LAPTOP)
    moved = run.call("POST", "/auth/email/change", {"new_email": thief_mailbox, "password": PASSWORD}, bearer(thief))
    assert moved[0] == 202
    [change_code] = mails_with(run, thief_mailbox, "Confirm your new email address")
    assert run.call("POST", "/auth/email/confirm", {"code": change_code.code}, bearer(thief))[0] == 200
    [changed] = mails_with(run, owner, "email address was changed")
    assert delete(run, thief, thief_mailbox, 0)["status"] == "pending_deletion"
    [thiefs_notice] = mails_with(run, thief_mailbox, "will be deleted")
    thiefs_link = RESTORE_LINK.search(thiefs_notice.text)
    confirmed_at = time.monotonic()

    not_me = NOT_ME_LINK.search(changed.text)
    assert not_me is not None
    assert http_form(f"{run.stack.base_url}/auth/not-me", {"token": not_me.group(1)})[0] == 200
    time.sleep(max(0.0, GRACE_SECONDS + 2 - (time.monotonic() - confirmed_at)))  # the timer has come and gone
    # The press made the password the thief knows unusable until a reset, even from the owner's phone.
    assert log_in(run, owner, PHONE)[0] == 401
    assert thiefs_link is not None
    assert http_form(f"{run.stack.base_url}/auth/account/restore", {"token": thiefs_link.group(1)})[0] == 410
    assert refresh(run, thief)[0] == 401
    [reset] = mails_with(run, owner, "Reset")
    new_password = "the owner's new passphrase 5"
    answer = run.call(
        "POST", "/auth/password/reset", {"email": owner, "code": reset.code, "new_password": new_password}
    )
    assert answer[0] == 200  # the account outlived the grace: the reset found it
    assert log_in(run, owner, PHONE)[0] == 401  # the password the thief knew is gone
    status, _, body = log_in(run, owner, PHONE, new_password)
    assert status == 200, body
    me = run.call("GET", "/auth/me", headers=bearer(body))[2]
    assert me["email"] == owner and me["status"] == "verified"  # at the owner's address, not pending deletion
