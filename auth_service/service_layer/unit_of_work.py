"""Write, then deliver what the write stored: the one place that decides how a stored message leaves.

Every message auth sends is stored in its account's outbox in the same MongoDB write as the change it
announces or asks for (``commit``), or, where the change lives in another store, in a write of its own
before that change (``announce``). Once the write is done, its messages are delivered by one policy:

- **Work for a service** (a code request, a notice, a timer in a delay queue, the worker's share of an
  erasure): the request waits for the broker's publisher confirm. The answer promises it (a 202 means
  the mail is on its way, and the code's mail waits for nothing else), and a refusal leaves the rest of
  the write's messages to the relay, in their order.
- **Account events** (``user.*``, for whoever subscribes): they leave at the link thread's next tick
  (``Outbox.deliver_soon``, docs/decisions/tick-publishing.md). No answer depends on a subscriber
  hearing of it; the outbox already makes it certain (the relay publishes it after its grace period
  if the confirm never comes), and one process's publishes still leave in the order they were made.

Flows call ``commit``, ``commit_if`` or ``announce``, never the outbox: the policy is stated here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from auth_service.ports import BrokerUnavailable, OutboxEntry
from auth_service.service_layer.outbox import Outbox
from common.messaging.topology import EVENT_ROUTING_KEY

T = TypeVar("T")


def answer_waits(entry: OutboxEntry) -> bool:
    """The policy: does the request wait for this message's publisher confirm? (Work: yes; events: no.)"""
    return EVENT_ROUTING_KEY.fullmatch(entry.queue) is None


class UnitOfWork:
    def __init__(self, outbox: Outbox):
        self._outbox = outbox

    def commit(
        self, user_id: str, entries: Sequence[OutboxEntry], write: Callable[..., None], *args: Any, **kwargs: Any
    ) -> None:
        """Run ``write(*args, **kwargs, publish_after=...)``, the one write that stores ``entries`` in the
        account's outbox with the change (``publish_after``: when the relay may take them over), then
        deliver them. A write that cannot take place raises, and nothing is delivered."""
        write(*args, **kwargs, publish_after=self._outbox.relay_after())
        self._deliver(user_id, entries)

    def commit_if(
        self, user_id: str, entries: Sequence[OutboxEntry], write: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """``commit`` for a conditional write: its result (an updated account, True) says it matched; None or
        False, it stored nothing and nothing is delivered. Returns the write's result."""
        written = write(*args, **kwargs, publish_after=self._outbox.relay_after())
        if written:
            self._deliver(user_id, entries)
        return written

    def announce(self, user_id: str, entries: Sequence[OutboxEntry], then: Callable[[], T]) -> T:
        """Store ``entries`` in the account's outbox, run ``then`` (the change they announce, kept in another
        store: written after them, so that a crash in between repeats an announcement, never loses one),
        then deliver them. Returns ``then``'s result."""
        for entry in entries:
            self._outbox.add(user_id, entry)
        done = then()
        self._deliver(user_id, entries)
        return done

    def store(self, write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run the write alone: what it stores leaves with ``deliver_stored`` (an erasure, which must know
        every message confirmed before it goes on), or with the relay."""
        return write(*args, **kwargs, publish_after=self._outbox.relay_after())

    def deliver_stored(self, user_id: str) -> None:
        """Publish everything still in the account's outbox, each confirmed, before the document that holds
        it goes (an erasure). Raises ``BrokerUnavailable`` at the first refusal."""
        stored = self._outbox.stored(user_id)
        for index, entry in enumerate(stored):
            if not self._outbox.deliver(user_id, entry, others_pending=index < len(stored) - 1):
                raise BrokerUnavailable("the outbox's messages wait for the broker")

    def _deliver(self, user_id: str, entries: Sequence[OutboxEntry]) -> None:
        # A delivered entry is marked while the write's later entries are still stored: they leave after it.
        for index, entry in enumerate(entries):
            if not answer_waits(entry):
                self._outbox.deliver_soon(user_id, entry)
            elif not self._outbox.deliver(user_id, entry, others_pending=index < len(entries) - 1):
                return  # the broker refused: the rest, in order, is the relay's
