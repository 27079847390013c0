"""Which marks tell the store that later entries are still to go (``others_pending``): every delivered
entry but the last its caller delivers, in the outbox's order; never an event marked at its confirm."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Future
from datetime import datetime

import pytest

from auth_service.ports import BrokerUnavailable, OutboxEntry
from auth_service.service_layer.outbox import Outbox
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.envelope import Outgoing


def entry(queue: str, message_id: str) -> OutboxEntry:
    return OutboxEntry(queue=queue, message=Outgoing(type="test", body={}, message_id=message_id))


WORK_1, WORK_2, WORK_3 = entry("work", "w1"), entry("work", "w2"), entry("work", "w3")
EVENT = entry("user.verified", "e1")


class Store:
    def __init__(self, entries: Sequence[OutboxEntry] = ()):
        self.entries = list(entries)
        self.marks: list[tuple[str, bool]] = []
        self.claimed = False

    def add_outbox(self, user_id: str, outbox: OutboxEntry, publish_after: datetime) -> None:
        self.entries.append(outbox)

    def outbox_entries(self, user_id: str) -> list[OutboxEntry]:
        return list(self.entries)

    def outbox_delivered(self, user_id: str, message_id: str, others_pending: bool = False) -> None:
        self.marks.append((message_id, others_pending))

    def claim_due_outbox(self, now: datetime, lease_until: datetime):
        if self.claimed or not self.entries:
            return None
        self.claimed = True
        return "user-1", list(self.entries)

    def postpone_outbox(self, user_id: str, until: datetime) -> None:
        pass


class Bus:
    def __init__(self, refuse: AbstractSet[str] = frozenset()):
        self.refuse = refuse
        self.soon: list[Future] = []

    def publish(self, queue: str, message: Outgoing, timeout: float) -> None:
        if message.message_id in self.refuse:
            raise BrokerUnavailable("refused")

    def publish_soon(self, queue: str, message: Outgoing) -> Future:
        done: Future = Future()
        self.soon.append(done)
        return done


def write(store: Store, *entries: OutboxEntry) -> None:
    for stored in entries:
        store.add_outbox("user-1", stored, publish_after=datetime.now())


@pytest.mark.parametrize(
    ("entries", "marks"),
    [
        ([WORK_1, WORK_2, WORK_3], [("w1", True), ("w2", True), ("w3", False)]),
        ([WORK_1, EVENT], [("w1", True), ("e1", False)]),  # a registration: the event is marked at its confirm
        ([EVENT, WORK_1], [("w1", False), ("e1", False)]),
    ],
)
def test_a_commit_hints_every_delivered_entry_but_its_last(entries, marks):
    store, bus = Store(), Bus()
    uow = UnitOfWork(Outbox(store, bus, publish_timeout_seconds=1.0))
    uow.commit("user-1", entries, lambda *args, publish_after: write(store, *entries))
    for confirmed in bus.soon:
        confirmed.set_result(None)
    assert store.marks == marks


def test_a_refused_commit_leaves_the_rest_unmarked():
    store, bus = Store(), Bus(refuse={"w2"})
    uow = UnitOfWork(Outbox(store, bus, publish_timeout_seconds=1.0))
    uow.commit("user-1", [WORK_1, WORK_2, WORK_3], lambda *args, publish_after: write(store, WORK_1, WORK_2, WORK_3))
    assert store.marks == [("w1", True)]


def test_the_relay_and_an_erasure_hint_every_entry_of_their_batch_but_the_last():
    store = Store([WORK_1, EVENT, WORK_2])
    assert Outbox(store, Bus(), publish_timeout_seconds=1.0).relay_due() == 3
    assert store.marks == [("w1", True), ("e1", True), ("w2", False)]
    store = Store([WORK_1, EVENT])
    UnitOfWork(Outbox(store, Bus(), publish_timeout_seconds=1.0)).deliver_stored("user-1")
    assert store.marks == [("w1", True), ("e1", False)]
