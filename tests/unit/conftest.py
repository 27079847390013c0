"""Both services wired on fakes: mongomock, fakeredis, a mail outbox, an in-memory broker.

The handlers and use cases are the production ones; only the wiring differs.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import fakeredis
import mongomock
import pytest

from auth_service import bootstrap as auth_bootstrap
from auth_service.adapters.cooldowns import InMemoryCooldowns
from auth_service.config import Settings as AuthSettings
from auth_service.entrypoints.consumers import code_verified_router
from common.messaging.topology import MAILED_EVENTS
from email_service import bootstrap as worker_bootstrap
from email_service.adapters.mailer import SmtpMailer
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.adapters.suppressions import RedisSuppressions
from email_service.config import Settings as WorkerSettings
from email_service.handlers import EVENT_NOTICES
from tests.fakes import InMemoryBroker, MailOutbox

BASE_ENV = {
    "APP_ENV": "development",
    "MONGO_URI": "mongomock://",
    "BCRYPT_ROUNDS": "4",
    "RATELIMIT_ENABLED": "false",
    "RATELIMIT_STORAGE_URI": "memory://",
    "JWT_SECRET": "unit-test-secret-that-is-long-enough-0123456789",
    "CODE_HMAC_KEY": "unit-test-code-key-that-is-long-enough-0123456789",
}


def _subjects_of(templates: list[str]) -> frozenset[str]:
    folder = Path(worker_bootstrap.__file__).parent / "templates"
    found = (re.match(r'{% set subject = _\("([^"]+)"\)', (folder / f"{name}.txt").read_text()) for name in templates)
    return frozenset(match.group(1) for match in found if match)


EVENT_NOTICE_SUBJECTS = _subjects_of([template for template, _ in EVENT_NOTICES.values()])

# This machine's RabbitMQ (AMQP and management) and Redis, shared by every run and developer.
SHARED_SERVER_PORTS = frozenset({5672, 15672, 6379})


@pytest.fixture(autouse=True)
def no_shared_servers(monkeypatch):
    """Unit tests run on fakes: a connection to a shared server is refused, and fails the test that tried it
    (also when the code under test took the refusal for an outage). Servers a test starts itself, on free
    ports, are left alone."""
    tried: list[object] = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address) -> None:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] in SHARED_SERVER_PORTS:
            tried.append(address)
            raise ConnectionRefusedError(f"a unit test reached for the shared server at {address}")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert not tried, f"unit tests run on fakes, yet this one connected to {tried}: move it to tests/integration"


class Clock:
    """A clock a test can move; it starts at the real time because pyjwt checks tokens against it."""

    def __init__(self, now: float | None = None):
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RedisClock:
    """fakeredis's time, by which a key's time to live runs out: the real time, plus what the test moved it on."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def time(self) -> float:
        return time.time() + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += seconds


@pytest.fixture
def redis_clock(monkeypatch) -> RedisClock:
    """Move fakeredis's clock instead of waiting for a key to expire. fakeredis reads the time once per
    command, as ``time.time()`` in its socket module, and judges every expiry by it (as its maintainers
    advise, for a test that travels in time); only that module's ``time`` is replaced, for one test."""
    clock = RedisClock()
    monkeypatch.setattr("fakeredis._socket._base.time", clock)
    return clock


@dataclass
class System:
    auth_settings: AuthSettings
    worker_settings: WorkerSettings
    auth: auth_bootstrap.AuthSystem
    broker: InMemoryBroker
    redis: fakeredis.FakeRedis
    store: RedisPendingCodes
    mailer: SmtpMailer
    outbox: MailOutbox
    clock: Clock
    cooldown_clock: Clock

    @property
    def client(self):
        return self.auth.app.test_client()

    def codes_for(self, email: str) -> list[str]:
        """The codes mailed to ``email``, in order; account-event notices (which carry none) are left out."""
        import re

        codes = []
        for mail in self.outbox:
            if email in mail.recipients and mail.subject not in EVENT_NOTICE_SUBJECTS:
                found = re.search(r"\b\d{6}\b", mail.body)
                assert found is not None, f"a mail to {email} without a code: {mail.subject!r}"
                codes.append(found.group(0))
        return codes


def build_system(env: dict | None = None, resend_requested=None, abuse_checks=None, database=None) -> System:
    """``database``: another system's, to play a second replica on the same MongoDB."""
    full_env = {**BASE_ENV, **(env or {})}
    auth_settings = AuthSettings.from_env(full_env)
    worker_settings = WorkerSettings.from_env(full_env)
    clock = Clock()
    cooldown_clock = Clock(0.0)
    broker = InMemoryBroker()
    redis = fakeredis.FakeRedis()
    store = RedisPendingCodes(redis, worker_settings.redis_key_prefix)
    outbox = MailOutbox()
    mailer = SmtpMailer(worker_settings.mail_default_sender, outbox, default_locale=worker_settings.default_locale)
    # Read at every mail: tests lift with a list of their own on the same Redis, and look at once.
    suppressions = RedisSuppressions(redis, worker_settings.redis_key_prefix, refresh_seconds=0)
    handlers = worker_bootstrap.build_handlers(
        worker_settings, store=store, mailer=mailer, clock=clock, suppressions=suppressions
    )
    auth = auth_bootstrap.build(
        auth_settings,
        mode=auth_bootstrap.Mode.IN_PROCESS,
        database=database if database is not None else mongomock.MongoClient()[auth_settings.mongo_db],
        bus=broker,
        cooldowns=InMemoryCooldowns(clock=cooldown_clock),
        clock=clock,
        resend_requested=resend_requested,
        abuse_checks=abuse_checks,
    )
    broker.bind(worker_settings.account_creation_queue, handlers.code_requests)
    broker.bind(worker_settings.confirm_email_code_queue, handlers.code_submissions)
    # The fake broker delivers by destination: the worker's queue is bound to each event it mails.
    for routing_key in MAILED_EVENTS:
        broker.bind(routing_key, handlers.notifications)
    broker.bind(
        auth_settings.account_confirmed_queue,
        code_verified_router(
            auth.verified_codes,
            auth.failed_logins,
            auth.not_me,
            auth.mail_suppressions,
            auth.deletion,
            auth.account_admin,
        ),
    )
    return System(
        auth_settings,
        worker_settings,
        auth,
        broker,
        redis,
        store,
        mailer,
        outbox,
        clock,
        cooldown_clock,
    )


@pytest.fixture
def system():
    return build_system()


@pytest.fixture
def make_system():
    return build_system
