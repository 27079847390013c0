"""The outbox in the account document: an entry leaves once delivered, and the relay stops watching the
account (``outbox_due_at``) when nothing is left, in whatever order the entries are delivered; never
while something is. A caller's wrong ``others_pending`` hint can leave an empty outbox watched, which the
relay's next claim ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import pytest

from auth_service.adapters import mongo_schema
from auth_service.adapters.mongo_users import MongoUserRepository
from auth_service.ports import OutboxEntry
from common.messaging.envelope import Outgoing

DUE = datetime(2026, 1, 1, tzinfo=UTC)


class CountedWrites:
    """The users collection, counting the writes made through it."""

    def __init__(self, collection):
        self._collection = collection
        self.writes = 0

    def __getattr__(self, name: str):
        attribute = getattr(self._collection, name)
        if name.startswith(("update_", "find_one_and_", "insert_", "delete_")):
            self.writes += 1
        return attribute


@pytest.fixture
def users() -> MongoUserRepository:
    database: Any = mongomock.MongoClient()["test"]
    mongo_schema.migrate(database, unverified_ttl_seconds=60, now=datetime.now(UTC), in_process=True)
    repository = MongoUserRepository(database)
    repository._users.insert_one({"_id": "user-1", "email": "ada@example.com", "outbox": []})
    return repository


def add(users: MongoUserRepository, *message_ids: str) -> None:
    for message_id in message_ids:
        message = Outgoing(type="user.verified", body={}, message_id=message_id)
        users.add_outbox("user-1", OutboxEntry(queue="user.verified", message=message), publish_after=DUE)


def state(users: MongoUserRepository) -> tuple[list[str], bool]:
    document = users._users.find_one({"_id": "user-1"})
    return [entry["message_id"] for entry in document["outbox"]], "outbox_due_at" in document


def count_writes(users: MongoUserRepository) -> CountedWrites:
    counted = CountedWrites(users._users)
    users._users = counted
    return counted


def test_the_only_entry_leaves_with_the_relays_watch_in_one_write(users):
    add(users, "event-1")
    counted = count_writes(users)
    users.outbox_delivered("user-1", "event-1")
    assert state(users) == ([], False)
    assert counted.writes == 1


@pytest.mark.parametrize("order", [("first", "second"), ("second", "first")])
def test_the_watch_ends_with_the_last_entry_whichever_is_delivered_first(users, order):
    add(users, "first", "second")
    users.outbox_delivered("user-1", order[0])
    assert state(users) == ([order[1]], True)
    users.outbox_delivered("user-1", order[1])
    assert state(users) == ([], False)


def test_an_entry_delivered_twice_changes_nothing_more(users):
    add(users, "first", "second")
    users.outbox_delivered("user-1", "first")
    users.outbox_delivered("user-1", "first")
    assert state(users) == (["second"], True)
    users.outbox_delivered("user-1", "second")
    users.outbox_delivered("user-1", "second")
    assert state(users) == ([], False)


def test_an_entry_stored_after_the_others_left_keeps_the_account_watched(users):
    add(users, "first")
    users.outbox_delivered("user-1", "first")
    add(users, "second")
    assert state(users) == (["second"], True)
    assert users.overdue_outbox_count(DUE + timedelta(seconds=1)) == 1


def test_a_delivery_for_an_account_that_is_gone_is_ignored(users):
    users._users.delete_one({"_id": "user-1"})
    users.outbox_delivered("user-1", "event-1")
    assert users._users.count_documents({}) == 0


def test_an_entry_delivered_before_the_rest_of_its_write_leaves_in_one_write_and_the_watch_stays(users):
    add(users, "code-request", "event")
    counted = count_writes(users)
    users.outbox_delivered("user-1", "code-request", others_pending=True)
    assert state(users) == (["event"], True)
    users.outbox_delivered("user-1", "event")
    assert state(users) == ([], False)
    assert counted.writes == 2


def test_a_wrong_hint_leaves_an_empty_outbox_that_the_relays_next_claim_stops_watching(users):
    add(users, "first", "second")
    users.outbox_delivered("user-1", "second")
    users.outbox_delivered("user-1", "first", others_pending=True)  # the rest had left meanwhile
    assert state(users) == ([], True)
    assert users.claim_due_outbox(DUE + timedelta(seconds=1), lease_until=DUE + timedelta(seconds=31)) is None
    assert state(users) == ([], False)
