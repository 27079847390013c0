"""The auth service's small interfaces to the outside world."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from auth_service.domain.accounts import User
from common.messaging.envelope import Outgoing


class BrokerUnavailable(Exception):
    """The broker is not reachable or did not confirm in time."""


@dataclass(frozen=True)
class OutboxEntry:
    """A message stored with its user document until the broker confirmed it."""

    queue: str
    message: Outgoing


class UserRepository(Protocol):
    def add(self, user: User, outbox: OutboxEntry, publish_after: datetime) -> None: ...
    def by_email(self, email: str) -> User | None: ...
    def by_id(self, user_id: str) -> User | None: ...
    def mark_verified(self, user_id: str, at: datetime) -> bool: ...
    def replace_password_hash(self, user_id: str, password_hash: str) -> None: ...
    def add_outbox(self, user_id: str, outbox: OutboxEntry, publish_after: datetime) -> None: ...
    def outbox_delivered(self, user_id: str, message_id: str) -> None: ...
    def claim_due_outbox(self, now: datetime, lease_until: datetime) -> tuple[str, list[OutboxEntry]] | None: ...
    def postpone_outbox(self, user_id: str, until: datetime) -> None: ...
    def ping(self) -> None: ...


class MessageBus(Protocol):
    def publish(self, queue: str, message: Outgoing, timeout: float) -> None: ...
    def request(self, queue: str, message: Outgoing, timeout: float) -> dict | None: ...
    @property
    def connected(self) -> bool: ...


class Cooldowns(Protocol):
    def start(self, key: str, seconds: int) -> float:
        """Start a cooldown; returns 0 if it started, else the seconds left of the running one."""
        ...
