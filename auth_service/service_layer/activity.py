"""Each account's security activity: logins, failures, locks, changes, session ends, kept AUDIT_RETENTION_DAYS.

An account event is recorded by its outbox entry: the entry is stored in the
same write as the change it announces, carries the address and device of the
request that caused it, and moves into the activity store when the broker has
confirmed it (``Outbox`` hands it over before it drops the entry). Until then
the activity is read from the outbox itself, so nothing is missing in between.
What is recorded but not published (a login, a failed login) is stored
directly, right after the write that does it.

The request's address and device reach the entries through a context variable
the HTTP layer binds for each request; work done off a request (a consumer, a
timer) records neither.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from auth_service.domain.activity import NOT_RECORDED, RECENT_ACTIVITY_SHOWN, Activity, Client
from auth_service.ports import OutboxEntry
from common.messaging.topology import EVENT_ROUTING_KEY

log = logging.getLogger(__name__)

_client: contextvars.ContextVar[Client | None] = contextvars.ContextVar("activity_client", default=None)


def bind_client(client: Client | None) -> contextvars.Token:
    return _client.set(client)


def unbind_client(token: contextvars.Token) -> None:
    _client.reset(token)


def current_client() -> Client | None:
    return _client.get()


class ActivityStore(Protocol):
    def keep(self, activity: Activity) -> None: ...
    def recent(self, user_id: str, since: datetime, limit: int) -> list[Activity]: ...
    def erase(self, user_id: str) -> int: ...
    def documents_of(self, user_id: str) -> list[dict]: ...


class PendingEvents(Protocol):
    def outbox_entries(self, user_id: str) -> list[OutboxEntry]: ...


class ActivityLog:
    def __init__(
        self,
        store: ActivityStore,
        pending: PendingEvents,
        retention_days: int,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._pending = pending
        self._retention = timedelta(days=retention_days)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def record(self, user_id: str, kind: str) -> None:
        """Record something done to the account that is not an event, from the current request's client."""
        client = current_client()
        self._store.keep(
            Activity(
                id=uuid.uuid4().hex,
                user_id=user_id,
                type=kind,
                occurred_at=self._now(),
                ip=client.ip if client else None,
                device=client.device if client else None,
            )
        )

    def keep_delivered(self, user_id: str, entry: OutboxEntry) -> None:
        """An outbox entry the broker confirmed: if it is an account event, it joins the activity."""
        activity = as_activity(user_id, entry)
        if activity is not None:
            self._store.keep(activity)

    def recent(self, user_id: str, limit: int = RECENT_ACTIVITY_SHOWN) -> list[Activity]:
        """The account's activity within the retention, newest first, events not yet published included."""
        since = self._now() - self._retention
        kept = {activity.id: activity for activity in self._store.recent(user_id, since, limit)}
        for entry in self._pending.outbox_entries(user_id):
            activity = as_activity(user_id, entry)
            if activity is not None and activity.occurred_at > since:
                kept.setdefault(activity.id, activity)
        return sorted(kept.values(), key=lambda activity: activity.occurred_at, reverse=True)[:limit]

    def erase(self, user_id: str) -> int:
        return self._store.erase(user_id)

    def documents_of(self, user_id: str) -> list[dict]:
        return self._store.documents_of(user_id)


def as_activity(user_id: str, entry: OutboxEntry) -> Activity | None:
    """The activity an outbox entry records: account events only (a code request or a notice is none)."""
    if not EVENT_ROUTING_KEY.fullmatch(entry.queue) or entry.queue in NOT_RECORDED:
        return None
    try:
        occurred_at = datetime.fromisoformat(str(entry.message.body["occurred_at"]))
    except (KeyError, ValueError):
        log.warning("account event without a readable time left out of the activity", extra={"type": entry.queue})
        return None
    client = entry.client
    return Activity(
        id=entry.message.message_id,
        user_id=user_id,
        type=entry.queue,
        occurred_at=occurred_at.astimezone(UTC),
        ip=client.ip if client else None,
        device=client.device if client else None,
    )
