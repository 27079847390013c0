"""Account events: built here, stored in the user's outbox in the write that causes them.

An event's destination is its routing key (``user.*``): the outbox publishes
it on ACCOUNT_EVENTS_EXCHANGE like any other stored message, with a publisher
confirm, and the relay covers a broker outage. ``event_id`` is the AMQP
message id, so every consumer dedupes by it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from auth_service.domain.accounts import User
from auth_service.ports import OutboxEntry
from auth_service.service_layer.activity import current_client
from common.messaging.messages import AccountEvent


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class AccountEvents:
    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock

    def entry(self, event: type[AccountEvent], user: User, *, email: str | None = None, **extra: Any) -> OutboxEntry:
        """The outbox entry of ``event`` about ``user`` (``email``: the address it names, if not the user's)."""
        event_id = uuid.uuid4().hex
        message = event(
            event_id=event_id,
            occurred_at=rfc3339(datetime.fromtimestamp(self._clock(), UTC)),
            user_id=user.id,
            email=email or user.email,
            locale=user.locale,
            **extra,
        )
        return OutboxEntry(event.TYPE, message.outgoing(message_id=event_id), client=current_client())
