"""Properties of the worker's message handling, whatever arrives on its queues.

A delivery is pushed through the real ``Consumer._on_message`` (parsing and
settling) and the real routers into the real ``CodeHandlers`` on fakeredis, with a channel
and a mailer that write every operation into one journal. For any body bytes
and any AMQP properties and headers:

- nothing raises out of the consumer;
- the delivery is acked exactly once, and the ack is the last thing done for
  it: after the store writes, the mail, the verdict reply, the confirmation or
  the republish to a retry or dead-letter queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import fakeredis
import pika
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.messaging.consumer import Consumer
from common.messaging.messages import CodeRequested, CodeSubmitted, Purpose
from common.messaging.topology import Topology
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.domain.codes import PendingCode, Slot, code_digest
from email_service.handlers import CodeHandlers, CodePolicy
from email_service.ports import PermanentMailError, TransientMailError

QUEUES = {"creation": "prop.account_creation", "confirm": "prop.confirm_email_code", "confirmed": "prop.confirmed"}
KEY = "property-test-code-key-that-is-long-enough"
NOW = 1_700_000_000.0

PROPERTY_SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Journal(list):
    def note(self, *entry) -> None:
        self.append(entry)


class JournalingStore:
    """The Redis store, with every call written to the journal before it runs."""

    WRITES = {"start_issue", "finish_issue", "replace", "attempt", "discard_consumed"}

    def __init__(self, inner: RedisPendingCodes, journal: Journal, fail_on: str | None = None):
        self._inner = inner
        self._journal = journal
        self._fail_on = fail_on

    def __getattr__(self, name):
        method = getattr(self._inner, name)

        def call(*args, **kwargs):
            if name == self._fail_on:
                raise RuntimeError("store failure (test)")
            result = method(*args, **kwargs)
            if name in self.WRITES:
                self._journal.note("store", name)
            return result

        return call


class JournalingMailer:
    def __init__(self, journal: Journal, outcome: Exception | None):
        self._journal = journal
        self._outcome = outcome

    def send(self, template, to, context) -> None:
        if self._outcome is not None:
            raise self._outcome
        self._journal.note("mail", to)


class JournalingChannel:
    def __init__(self, journal: Journal):
        self._journal = journal

    def basic_publish(self, exchange, routing_key, body, properties=None, mandatory=False):
        assert isinstance(body, bytes)
        self._journal.note("publish", routing_key)

    def basic_ack(self, delivery_tag, multiple=False):
        self._journal.note("ack", delivery_tag)


@dataclass
class Method:
    delivery_tag: int


def header_values():
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=True),
        st.text(max_size=20),
        st.binary(max_size=20),
    )
    return st.recursive(scalars, containers, max_leaves=6)


def containers(inner):
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


def amqp_properties():
    header_names = st.sampled_from(["x-request-id", "x-retry-count", "x-dead-letter-reason", "x-death"]) | st.text(
        max_size=12
    )
    optional_text = st.none() | st.text(max_size=40)
    return st.builds(
        pika.BasicProperties,
        content_type=st.none() | st.sampled_from(["application/json", "text/plain"]),
        message_id=optional_text,
        reply_to=optional_text,
        correlation_id=optional_text,
        type=optional_text,
        headers=st.none() | st.dictionaries(header_names, header_values(), max_size=4),
    )


def json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        containers,
        max_leaves=8,
    )


def message_bodies():
    """Bytes that are mostly near-valid messages, sometimes anything at all."""
    fields = {
        "type": st.sampled_from(
            [
                CodeRequested.TYPE,
                *CodeRequested.LEGACY_TYPES,
                CodeSubmitted.TYPE,
                *CodeSubmitted.LEGACY_TYPES,
                "other",
            ]
        )
        | json_values(),
        "purpose": st.sampled_from([*Purpose, "sign_out"]) | json_values(),
        "user_id": st.sampled_from(["u1", "u2"]) | json_values(),
        "email": st.sampled_from(["ada@example.com", "bob@example.com", ""]) | json_values(),
        "name": st.none() | st.text(max_size=30) | json_values(),
        "requested_at": st.floats(min_value=NOW - 100, max_value=NOW + 100) | json_values(),
        "code": st.sampled_from(["123456", "000000"]) | st.text(max_size=40) | json_values(),
        "link_token": st.none() | st.text(max_size=60) | json_values(),
    }
    shaped = st.fixed_dictionaries({}, optional=fields).map(lambda body: json.dumps(body).encode())
    return st.one_of(shaped, shaped, st.binary(max_size=200), json_values().map(lambda v: json.dumps(v).encode()))


def build(journal: Journal, mail_outcome: Exception | None, store_failure: str | None, preload: bool):
    store = RedisPendingCodes(fakeredis.FakeRedis(), "prop")
    if preload:  # a live code for ada, so that submissions reach every verdict
        slot = Slot(Purpose.VERIFY_EMAIL, "ada@example.com")
        pending = PendingCode(slot, "u1", code_digest(KEY, slot, "123456"), 0, "m0", NOW, False)
        store.start_issue(
            pending, "m0", ttl_seconds=600, now=NOW, per_hour=5, per_day=10, hold_seconds=1, wait_seconds=0
        )
        store.finish_issue(slot, "m0", "m0", sent=True)
    policy = CodePolicy(
        hmac_key=lambda: KEY, ttl_seconds=600, max_attempts=3, max_codes_per_hour=5, max_codes_per_day=10
    )
    handlers = CodeHandlers(
        JournalingStore(store, journal, store_failure),
        JournalingMailer(journal, mail_outcome),
        policy,
        QUEUES["confirmed"],
        clock=lambda: NOW,
    )
    return handlers


def consumer_for(queue: str, handler) -> Consumer:
    # Never started: _on_message is driven by hand with the journaling channel.
    routes = Topology(QUEUES["creation"], QUEUES["confirm"], QUEUES["confirmed"])
    return Consumer(url="amqp://guest:guest@127.0.0.1:1/%2F", queue=queue, handler=handler, topology=routes)


def assert_acked_last_and_once(journal: Journal, tag: int) -> None:
    acks = [entry for entry in journal if entry[0] == "ack"]
    assert acks == [("ack", tag)], journal
    assert journal[-1] == ("ack", tag), journal


mail_outcomes = st.sampled_from([None, TransientMailError("451 try later"), PermanentMailError("550 no such user")])
store_failures = st.sampled_from([None, None, None, "start_issue", "finish_issue", "attempt", "discard_consumed"])


@PROPERTY_SETTINGS
@given(
    body=message_bodies(),
    properties=amqp_properties(),
    which=st.sampled_from(["creation", "confirm"]),
    mail_outcome=mail_outcomes,
    store_failure=store_failures,
    preload=st.booleans(),
    tag=st.integers(min_value=1, max_value=2**32),
)
def test_any_delivery_is_acked_once_and_only_after_the_work(
    body, properties, which, mail_outcome, store_failure, preload, tag
):
    journal = Journal()
    handlers = build(journal, mail_outcome, store_failure, preload)
    handler = handlers.code_requests if which == "creation" else handlers.code_submissions
    consumer = consumer_for(QUEUES[which], handler)

    consumer._on_message(JournalingChannel(journal), Method(tag), properties, body)

    consumer.on_tick()

    assert_acked_last_and_once(journal, tag)


@PROPERTY_SETTINGS
@given(
    name=st.none() | st.text(max_size=30),
    message_id=st.text(min_size=1, max_size=40),
    headers=st.none() | st.dictionaries(st.text(max_size=12), header_values(), max_size=4),
    mail_outcome=mail_outcomes,
)
def test_a_code_request_writes_the_store_and_sends_before_the_ack(name, message_id, headers, mail_outcome):
    journal = Journal()
    handlers = build(journal, mail_outcome, None, preload=False)
    body = {"type": CodeRequested.TYPE, "purpose": "verify_email", "user_id": "u1", "email": "bob@example.com"}
    body.update(name=name, requested_at=NOW)
    properties = pika.BasicProperties(message_id=message_id, headers=headers)

    consumer = consumer_for(QUEUES["creation"], handlers.code_requests)
    consumer._on_message(JournalingChannel(journal), Method(7), properties, json.dumps(body).encode())
    consumer.on_tick()

    assert_acked_last_and_once(journal, 7)
    kinds = [entry[:2] for entry in journal]
    assert kinds.index(("store", "start_issue")) < kinds.index(("ack", 7))
    if mail_outcome is None:
        assert ("mail", "bob@example.com") in journal
        assert kinds.index(("store", "finish_issue")) < kinds.index(("ack", 7))
    else:  # parked for a retry or dead-lettered: republished before the ack
        assert journal[-2][0] == "publish"


@PROPERTY_SETTINGS
@given(
    code=st.sampled_from(["123456", "000000", "999999"]) | st.text(min_size=1, max_size=32),
    reply_to=st.none() | st.text(min_size=1, max_size=20),
    correlation_id=st.none() | st.text(max_size=20),
)
def test_a_submitted_code_is_judged_and_answered_before_the_ack(code, reply_to, correlation_id):
    journal = Journal()
    handlers = build(journal, None, None, preload=True)
    submission = {"type": CodeSubmitted.TYPE, "purpose": "verify_email", "email": "ada@example.com", "code": code}
    body = json.dumps(submission).encode()
    properties = pika.BasicProperties(message_id="submission-1", reply_to=reply_to, correlation_id=correlation_id)

    consumer = consumer_for(QUEUES["confirm"], handlers.code_submissions)
    consumer._on_message(JournalingChannel(journal), Method(9), properties, body)
    consumer.on_tick()

    assert_acked_last_and_once(journal, 9)
    assert journal[0] == ("store", "attempt")
    if code == "123456":
        assert ("publish", QUEUES["confirmed"]) in journal
    if reply_to:
        assert ("publish", reply_to) in journal
