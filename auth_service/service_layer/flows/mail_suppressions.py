"""Addresses that get no more mail, as auth knows them.

An address lands here three ways: a provider's bounce or complaint report
reaches auth's webhook (``reported``: auth records it and tells the worker,
which owns the list that stops mail); the worker was refused for good by a
mail server (``recorded``, from its message); and it leaves when an operator
lifts it (``lifted``, from the worker's message after ``python -m
email_service suppressions lift``). The first time an address is recorded,
its account (if any) gets ``user.email_undeliverable`` through its outbox.

Nothing here changes what registering or resending answers: the app learns
it only from ``email_deliverable`` in ``/auth/me``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from auth_service.ports import Accounts, MessageBus, SuppressionStore
from auth_service.service_layer.events import AccountEvents
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.messages import AddressSuppressed, SuppressionLifted, UserEmailUndeliverable

log = logging.getLogger(__name__)


def canonical(email: str) -> str:
    return email.strip().lower()


class MailSuppressions:
    def __init__(
        self,
        store: SuppressionStore,
        users: Accounts,
        uow: UnitOfWork,
        events: AccountEvents,
        bus: MessageBus,
        worker_queue: str,
        publish_timeout_seconds: float,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._users = users
        self._uow = uow
        self._events = events
        self._bus = bus
        self._worker_queue = worker_queue
        self._publish_timeout = publish_timeout_seconds
        self._clock = clock

    def deliverable(self, email: str) -> bool:
        return not self._store.contains(canonical(email))

    def reported(self, email: str, reason: str, source: str) -> None:
        """A provider's report: the worker is told first (durably: a broker that refuses raises, and the
        provider retries its webhook), then auth records it."""
        address = canonical(email)
        message = AddressSuppressed(email=address, reason=reason, source=source)
        self._bus.publish(
            self._worker_queue, message.outgoing(message_id=f"suppress-{uuid.uuid4().hex}"), self._publish_timeout
        )
        self.recorded(address, reason, source)

    def recorded(self, email: str, reason: str, source: str) -> bool:
        """Record the address (idempotent); True, and the account's event published, the first time."""
        address = canonical(email)
        if self._store.contains(address):
            return False
        # The event is stored before the address: a crash between the two repeats the event (at
        # least once, as every event), never loses it.
        user = self._users.by_email(address)
        now = datetime.fromtimestamp(self._clock(), UTC)
        if user is None:
            added = self._store.add(address, reason, source, now)
        else:
            entry = self._events.entry(UserEmailUndeliverable, user, reason=reason)
            added = self._uow.announce(user.id, [entry], then=lambda: self._store.add(address, reason, source, now))
        if not added:
            return False
        log.warning("address suppressed", extra={"reason": reason, "source": source})
        return True

    def lift(self, email: str) -> bool:
        """Support lifts the address (the admin API): the worker, whose list stops mail, is told first and
        durably (a broker that refuses raises: 503, and support asks again); then auth's copy goes. True if
        auth's copy had it."""
        address = canonical(email)
        message = SuppressionLifted(email=address)
        self._bus.publish(
            self._worker_queue, message.outgoing(message_id=f"lift-{uuid.uuid4().hex}"), self._publish_timeout
        )
        return self.lifted(address)

    def lifted(self, email: str) -> bool:
        removed = self._store.remove(canonical(email))
        if removed:
            log.info("address suppression lifted")
        return removed
