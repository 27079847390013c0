"""Account events and their notices end to end: real auth and worker, this machine's RabbitMQ, the mail sink.

The test plays another service (a chat service, say): it binds a private
queue of its own to the stack's events exchange under ``user.#``, walks one
user through a whole life, and checks that it saw every event in the order of
its causes, each well formed and free of secrets, while the user got each
notice by email. Thresholds and the lock are short, through the settings.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pika
import pytest

from common.messaging.envelope import Incoming
from common.messaging.messages import ACCOUNT_EVENTS
from devtools.stack import LocalStack, http_form, http_json
from tests.integration.conftest import RABBITMQ_URL
from tests.integration.test_lifecycle_flow import NEW_PASSWORD, PASSWORD, bearer, mail, new_email

# A new device's notice names it by the browser and system its User-Agent shows.
LAPTOP_BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
SHORT_LOCKS = {"FAILED_LOGIN_WARNING_THRESHOLD": "2", "LOCKOUT_THRESHOLD": "3", "LOCKOUT_SECONDS": "2"}
SECRET_WORDS = re.compile(r"password|code|token|hash|secret", re.IGNORECASE)
EVENT_CLASSES = {event.TYPE: event for event in ACCOUNT_EVENTS}


class OtherService:
    """A service of somebody else's: a private queue bound to every account event."""

    def __init__(self, exchange: str):
        self.queue = f"it-other-service-{uuid.uuid4().hex[:10]}"
        self._connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        self._channel = self._connection.channel()
        self._channel.queue_declare(self.queue, exclusive=True, auto_delete=True)
        self._channel.queue_bind(self.queue, exchange, routing_key="user.#")
        self.seen: list[tuple[pika.BasicProperties, dict]] = []

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < deadline:
            method, properties, body = self._channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                self._connection.sleep(0.05)
                continue
            self.seen.append((properties, json.loads(body)))
        return [body for _, body in self.seen]

    def close(self) -> None:
        try:
            self._channel.queue_delete(self.queue)
        finally:
            self._connection.close()


@pytest.fixture(scope="module")
def locking_stack(start_module_stack) -> LocalStack:
    return start_module_stack(**SHORT_LOCKS)


@pytest.fixture
def other_service(locking_stack):
    service = OtherService(locking_stack.env["ACCOUNT_EVENTS_EXCHANGE"])
    yield service
    service.close()


def log_in(stack, email, password=PASSWORD, agent="App/1.0 (Phone)"):
    status, _, body = stack.call(
        "POST", "/auth/login", {"email": email, "password": password}, headers={"User-Agent": agent}
    )
    return status, body


def test_a_service_bound_to_the_exchange_sees_a_whole_life_in_order_and_the_user_gets_each_notice(
    locking_stack, other_service
):
    stack, email, moved = locking_stack, new_email(), new_email()
    status, _, registered = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD, "name": "Ada"})
    assert status == 201
    code = mail(stack, email, "Confirm your email").code
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": code})[0] == 200
    mail(stack, email, "Welcome")

    assert log_in(stack, email)[0] == 200  # the first login: nothing to compare with
    assert log_in(stack, email, agent=LAPTOP_BROWSER)[0] == 200
    sign_in = mail(stack, email, "New sign-in")
    assert "Device: Chrome 120, Windows 10" in sign_in.text and "127.0.0.1" in sign_in.text and " UTC" in sign_in.text

    # Two wrong passwords warn, the third locks: then even the right one is refused alike, from any device
    # the account has not signed in from.
    wrong = [log_in(stack, email, "a wrong password", agent="Intruder/1.0") for _ in range(3)]
    assert "2 times" in mail(stack, email, "Failed sign-in").text
    assert "Forgot password" in mail(stack, email, "is locked").text
    assert log_in(stack, email, agent="Intruder/1.0") == wrong[-1] == (401, wrong[0][1])
    # The broker's timer ends the lock (LOCKOUT_SECONDS=2) and the unlocked notice follows, unasked.
    assert "sign in again" in mail(stack, email, "is unlocked").text
    assert log_in(stack, email, agent=LAPTOP_BROWSER)[0] == 200

    # Locked again, and a reset ends the lock at once.
    for _ in range(3):
        log_in(stack, email, "a wrong password")
    mail(stack, email, "is locked", count=2)
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    reset_code = mail(stack, email, "Reset").code
    reset = {"email": email, "code": reset_code, "new_password": NEW_PASSWORD}
    assert stack.call("POST", "/auth/password/reset", reset)[0] == 200
    mail(stack, email, "is unlocked", count=2)
    mail(stack, email, "Your password was changed")
    status, pair = log_in(stack, email, NEW_PASSWORD, agent=LAPTOP_BROWSER)
    assert status == 200

    change = {"current_password": NEW_PASSWORD, "new_password": PASSWORD}
    status, _, pair = stack.call("POST", "/auth/password/change", change, headers=bearer(pair))
    assert status == 200
    mail(stack, email, "Your password was changed", count=2)
    ask = {"new_email": moved, "password": PASSWORD}
    assert stack.call("POST", "/auth/email/change", ask, headers=bearer(pair))[0] == 202
    change_code = mail(stack, moved, "Confirm your new").code
    assert stack.call("POST", "/auth/email/confirm", {"code": change_code}, headers=bearer(pair))[0] == 200
    # The sentinel: one more event, from a request after all the others. Once it is in, any event sent twice
    # or unasked before it would be in too: it must come right after the last expected one.
    assert log_in(stack, moved, agent=FIREFOX_ON_LINUX)[0] == 200

    expected = [
        ("user.registered", {"name": "Ada"}),
        ("user.verified", {}),
        ("user.login_new_device", {"ip": "127.0.0.1", "device": "Chrome 120, Windows 10"}),
        ("user.login_failures", {"failures": 2}),
        ("user.locked", {}),
        ("user.unlocked", {"reason": "expired"}),
        ("user.login_failures", {"failures": 2}),
        ("user.locked", {}),
        ("user.password_changed", {"reason": "reset"}),
        ("user.unlocked", {"reason": "reset"}),
        ("user.sessions_revoked", {"all": True, "reason": "password_reset"}),
        ("user.password_changed", {"reason": "change"}),
        ("user.sessions_revoked", {"all": True, "reason": "password_changed"}),
        ("user.email_changed", {"email": moved, "old_email": email}),
        ("user.login_new_device", {"device": "Firefox 121, Linux"}),
    ]
    seen = other_service.wait_for(len(expected))
    assert [body["type"] for body in seen] == [name for name, _ in expected]
    secrets = {PASSWORD, NEW_PASSWORD, code, reset_code, change_code, pair["access_token"], pair["refresh_token"]}
    for (properties, body), (name, fields) in zip(other_service.seen, expected, strict=True):
        assert body.items() >= fields.items(), body
        assert body["user_id"] == registered["id"] and body["event_id"] == properties.message_id
        assert properties.content_type == "application/json" and properties.delivery_mode == 2
        EVENT_CLASSES[name].parse(Incoming.parse(properties, json.dumps(body).encode()))  # raises if malformed
        assert not any(SECRET_WORDS.search(key) for key in body), body
        assert not any(secret in json.dumps(body) for secret in secrets), body

    print(f"\nEmails to {email} over its life:")
    for received in stack.sink.mails_to(email):
        print(f"  {received.subject}")
    print("Events the other service saw:")
    for body in seen:
        print(f"  {body['type']} {json.dumps({k: v for k, v in body.items() if k not in ('type', 'event_id')})}")


NOT_ME_LINK = re.compile(r"(http://\S+/auth/not-me)\?token=(\S+)")
FORM = re.compile(r'<form method="post" action="([^"]+)">\s*<input type="hidden" name="token" value="([^"]+)">')


def test_the_new_sign_in_notices_link_signs_every_device_out_and_mails_a_reset_code(locking_stack):
    stack, email = locking_stack, new_email()
    assert stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    code = mail(stack, email, "Confirm your email").code
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": code})[0] == 200
    status, mine = log_in(stack, email)
    assert status == 200
    log_in(stack, email, agent="Intruder/1.0")
    notice = mail(stack, email, "New sign-in")
    link = NOT_ME_LINK.search(notice.text)
    assert link is not None and link.group(0) in notice.html

    # Opening the link (a mail scanner would) changes nothing; the page's one button acts. The worker
    # tells auth of the link as it mails it: the page answers once auth has stored it.
    deadline = time.monotonic() + 10
    while (answer := http_json("GET", link.group(0)))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    status, _, page = answer
    assert status == 200
    assert stack.call("GET", "/auth/me", headers=bearer(mine))[0] == 200
    form = FORM.search(page)
    assert form is not None and form.group(2) == link.group(2)
    status, _, done = http_form(f"{stack.base_url}{form.group(1)}", {"token": form.group(2)})
    assert status == 200 and "signed out" in done
    assert stack.call("GET", "/auth/me", headers=bearer(mine))[0] == 401
    assert stack.call("POST", "/auth/token/refresh", {"refresh_token": mine["refresh_token"]})[0] == 401
    reset_code = mail(stack, email, "Reset").code
    reset = {"email": email, "code": reset_code, "new_password": NEW_PASSWORD}
    assert stack.call("POST", "/auth/password/reset", reset)[0] == 200
    assert http_form(f"{stack.base_url}{form.group(1)}", {"token": form.group(2)})[0] == 410  # once


def test_a_pt_br_account_gets_its_notices_in_pt_br(locking_stack):
    stack, email = locking_stack, new_email()
    body = {"email": email, "password": PASSWORD, "locale": "pt-BR"}
    assert stack.call("POST", "/auth/register", body)[0] == 201
    code = mail(stack, email, "Confirme seu endereço").code
    assert stack.call("POST", "/auth/confirm", {"email": email, "code": code})[0] == 200
    mail(stack, email, "Boas-vindas")
    assert log_in(stack, email)[0] == 200
    assert log_in(stack, email, agent=FIREFOX_ON_LINUX)[0] == 200
    sign_in = mail(stack, email, "Nova entrada")
    assert "Dispositivo: Firefox 121, Linux" in sign_in.text and "Não foi você?" in sign_in.text
    assert '<html lang="pt-BR">' in sign_in.html
    for _ in range(3):
        log_in(stack, email, "a wrong password")
    assert "2 vezes seguidas" in mail(stack, email, "Tentativas de entrar").text
    mail(stack, email, "está bloqueada")
    assert "entrar de novo" in mail(stack, email, "está desbloqueada").text
    status, pair = log_in(stack, email, agent=FIREFOX_ON_LINUX)
    assert status == 200
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert stack.call("POST", "/auth/password/change", change, headers=bearer(pair))[0] == 200
    assert "foi alterada em" in mail(stack, email, "Sua senha foi alterada").text

    print(f"\nEmails to {email} (pt-BR) over its life:")
    for received in stack.sink.mails_to(email):
        print(f"  {received.subject}")
