"""``Outbox.deliver_soon``: a publish the request does not wait for, marked delivered only once the
broker confirmed it, and otherwise left in the outbox for the relay."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import mongomock

from auth_service.adapters import mongo_schema
from auth_service.adapters.mongo_users import MongoUserRepository
from auth_service.ports import BrokerUnavailable, OutboxEntry
from auth_service.service_layer.outbox import Outbox
from common.messaging.envelope import Outgoing

NOW = 1_800_000_000.0


class HeldBus:
    """Takes each publish and hands back its future, which the test settles as the broker would."""

    connected = True

    def __init__(self, up: bool = True):
        self.up = up
        self.published: list[tuple[str, Outgoing, Future]] = []

    def publish(self, queue, message, timeout):
        raise AssertionError("deliver_soon does not wait for a publish")

    def publish_soon(self, queue: str, message: Outgoing) -> Future[None]:
        if not self.up:
            raise BrokerUnavailable("down")
        confirmed: Future[None] = Future()
        self.published.append((queue, message, confirmed))
        return confirmed

    def request(self, queue, message, timeout):
        raise AssertionError("not a request")


def outbox_with_entry(bus: HeldBus, marks: list) -> tuple[Outbox, MongoUserRepository, OutboxEntry]:
    database: Any = mongomock.MongoClient()["test"]
    mongo_schema.migrate(database, unverified_ttl_seconds=60, now=datetime.now(UTC), in_process=True)
    users = MongoUserRepository(database)
    users._users.insert_one({"_id": "user-1", "email": "ada@example.com", "outbox": []})
    outbox = Outbox(users, bus, publish_timeout_seconds=1, clock=lambda: NOW, mark_later=marks.append)
    entry = OutboxEntry(queue="user.verified", message=Outgoing(type="user.verified", body={}, message_id="event-1"))
    outbox.add("user-1", entry)
    return outbox, users, entry


def stored_outbox(users: MongoUserRepository) -> list[str]:
    return [entry["message_id"] for entry in users._users.find_one({"_id": "user-1"})["outbox"]]


def test_the_entry_is_marked_delivered_once_confirmed_and_not_before():
    bus, marks = HeldBus(), []
    outbox, users, entry = outbox_with_entry(bus, marks)
    outbox.deliver_soon("user-1", entry)
    [(queue, message, confirmed)] = bus.published
    assert (queue, message.message_id) == ("user.verified", "event-1")
    assert marks == [] and stored_outbox(users) == ["event-1"]  # published, not yet confirmed
    confirmed.set_result(None)
    [mark] = marks  # handed to mark_later (off the link thread), not run by the confirm's thread
    assert stored_outbox(users) == ["event-1"]
    mark()
    assert stored_outbox(users) == []


def test_a_refused_or_unconfirmed_entry_stays_for_the_relay():
    bus, marks = HeldBus(), []
    outbox, users, entry = outbox_with_entry(bus, marks)
    outbox.deliver_soon("user-1", entry)
    bus.published[0][2].set_exception(RuntimeError("nacked"))
    outbox.deliver_soon("user-1", entry)
    bus.published[1][2].cancel()
    assert marks == []
    due = users._users.find_one({"_id": "user-1"})["outbox_due_at"]
    assert stored_outbox(users) == ["event-1"] and due.replace(tzinfo=UTC) > datetime.fromtimestamp(NOW, UTC)


def test_with_the_broker_down_nothing_is_published_and_the_entry_stays():
    bus, marks = HeldBus(up=False), []
    outbox, users, entry = outbox_with_entry(bus, marks)
    outbox.deliver_soon("user-1", entry)
    assert bus.published == [] and marks == [] and stored_outbox(users) == ["event-1"]
