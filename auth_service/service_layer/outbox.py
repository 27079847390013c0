"""Messages stored with their user document until the broker confirms them.

A request stores a message in the user's outbox in the same write as the
change it announces, then publishes it itself (``deliver``, waiting for the
broker's confirm), or leaves it to the link thread (``deliver_soon``, when
the answer does not depend on it); the relay thread publishes what neither
managed (the broker was away) once its grace period is over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

from auth_service.ports import BrokerUnavailable, MessageBus, OutboxEntry, OutboxStore

log = logging.getLogger(__name__)

# The request publishes the message itself; the relay steps in only if it has
# not succeeded by then, so the two rarely publish the same message.
OUTBOX_GRACE = timedelta(seconds=10)


class Outbox:
    def __init__(
        self,
        users: OutboxStore,
        bus: MessageBus,
        publish_timeout_seconds: float,
        clock: Callable[[], float] = time.time,
        mark_later: Callable[[Callable[[], object]], object] = lambda mark: mark(),
        on_delivered: Callable[[str, OutboxEntry], object] = lambda user_id, entry: None,
    ):
        """``mark_later`` runs the marking of an entry published by ``deliver_soon``: by default at once, on
        the thread that saw the confirm; with the real broker that is the link thread, which must not wait
        on MongoDB, so the wiring hands it to a thread of its own."""
        self._mark_later = mark_later
        # Called with each confirmed entry before it leaves the outbox: an event's record moves on from there.
        self._on_delivered = on_delivered
        self._users = users
        self._bus = bus
        self._publish_timeout = publish_timeout_seconds
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def relay_after(self) -> datetime:
        """When the relay may publish a message stored now, if its request has not."""
        return self._now() + OUTBOX_GRACE

    def add(self, user_id: str, entry: OutboxEntry) -> None:
        self._users.add_outbox(user_id, entry, publish_after=self.relay_after())

    def deliver(self, user_id: str, entry: OutboxEntry, others_pending: bool = False) -> bool:
        """Publish with a publisher confirm; False (the entry stays for the relay) if the broker refused.
        ``others_pending``: entries stored with this one are delivered after it (``outbox_delivered``)."""
        try:
            self._bus.publish(entry.queue, entry.message, timeout=self._publish_timeout)
        except BrokerUnavailable:
            log.warning("broker unavailable, message left in the outbox for the relay")
            return False
        self._delivered(user_id, entry, others_pending)
        return True

    def _delivered(self, user_id: str, entry: OutboxEntry, others_pending: bool = False) -> None:
        self._on_delivered(user_id, entry)
        self._users.outbox_delivered(user_id, entry.message.message_id, others_pending)

    def deliver_soon(self, user_id: str, entry: OutboxEntry) -> None:
        """Publish without waiting for the broker's confirm; the entry is marked delivered once it comes
        (off the link thread, by ``mark_later``), else the relay publishes it after its grace period."""
        try:
            published = self._bus.publish_soon(entry.queue, entry.message)
        except BrokerUnavailable:
            log.warning("broker unavailable, message left in the outbox for the relay")
            return

        def confirmed(done: Future) -> None:
            if not done.cancelled() and done.exception() is None:
                self._mark_later(lambda: self._delivered(user_id, entry))

        published.add_done_callback(confirmed)

    def stored(self, user_id: str) -> list[OutboxEntry]:
        """What waits in the account's outbox."""
        return self._users.outbox_entries(user_id)

    def relay_due(self, lease_seconds: float = 30.0) -> int:
        """Publish messages whose request did not manage to; returns how many went out.

        Raises ``BrokerUnavailable`` when the broker refuses, after putting the
        claimed messages back for a later round."""
        delivered = 0
        while True:
            now = self._now()
            claimed = self._users.claim_due_outbox(now, lease_until=now + timedelta(seconds=lease_seconds))
            if claimed is None:
                return delivered
            user_id, entries = claimed
            for index, entry in enumerate(entries):
                if not self.deliver(user_id, entry, others_pending=index < len(entries) - 1):
                    self._users.postpone_outbox(user_id, now)
                    raise BrokerUnavailable(f"{delivered} delivered before the broker refused")
                delivered += 1
