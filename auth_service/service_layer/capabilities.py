"""What a flow needs of another flow, named here so that neither imports the other.

``bootstrap`` hands each flow the object that does it (the sessions flow, the login-security flow).
"""

from __future__ import annotations

from typing import Protocol

from auth_service.domain.accounts import PendingChange, User
from auth_service.domain.devices import Device
from auth_service.domain.sessions import TokenPair
from auth_service.ports import OutboxEntry


class Authenticator(Protocol):
    def authenticate(self, access_token: str | None) -> User:
        """The account of a live access token, or the 401 of ``InvalidToken``."""
        ...


class SessionOpener(Authenticator, Protocol):
    def open(self, user: User, device: Device | None = None) -> TokenPair: ...


class SessionEnder(Authenticator, Protocol):
    def revoke_all_sessions(self, user_id: str, reason: str) -> User | None: ...

    def end_sessions_below(self, user_id: str, token_version: int, reason: str) -> int: ...


class ResetApplier(Protocol):
    def apply_reset(self, user_id: str, reset: PendingChange, announce: list[OutboxEntry]) -> User | None:
        """The reset's new password, every earlier token refused, the lock ended, and ``announce`` stored."""
        ...


class PasswordCheck(Protocol):
    def verify_password(self, email: str, password: str, device: Device | None = None) -> User:
        """The confirmed account whose password this is, counting the failures (login security)."""
        ...


class DeviceSightings(Protocol):
    def signed_in(self, user: User, device: Device) -> bool: ...


class LockRelease(Protocol):
    def unlocked_by_reset(self, user: User) -> list[OutboxEntry]:
        """The events of a lock and streak a reset ends (empty if there is none)."""
        ...
