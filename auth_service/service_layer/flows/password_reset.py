"""Password reset: a code mailed to the address (forgot), then the code and the new password (reset).

The new password's hash is stored on the account under the submission's id before the code is
submitted, and applied by ``_apply`` through the ``code.verified`` table (machinery: code_verified.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from auth_service.domain.accounts import PendingChange, normalize_email
from auth_service.domain.devices import Device
from auth_service.domain.errors import CodeExpired
from auth_service.domain.passwords import PasswordHasher
from auth_service.ports import Accounts, PendingChanges, ResendRequest
from auth_service.service_layer.capabilities import LockRelease, ResetApplier
from auth_service.service_layer.code_asks import CodeAsks
from auth_service.service_layer.code_verified import Verified, VerifiedCodes
from auth_service.service_layer.codes import CodeClient, error_for, new_submission_id
from auth_service.service_layer.events import AccountEvents
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.messages import Purpose, UserPasswordChanged, UserVerified

log = logging.getLogger(__name__)

# No account has this id (ids are 32 hex digits): what a reset for an unknown address writes to.
NO_ACCOUNT = "no-account"


class ResetStore(Accounts, PendingChanges, Protocol):
    """The account-document ports this uses."""


class PasswordReset:
    def __init__(
        self,
        users: ResetStore,
        codes: CodeClient,
        code_asks: CodeAsks,
        verified_codes: VerifiedCodes,
        uow: UnitOfWork,
        hasher: PasswordHasher,
        sessions: ResetApplier,
        locks: LockRelease,
        events: AccountEvents,
        clock: Callable[[], float] = time.time,
    ):
        self._users = users
        self._codes = codes
        self._code_asks = code_asks
        code_asks.on(Purpose.RESET_PASSWORD, self._issue_reset_code)
        self._verified_codes = verified_codes
        verified_codes.on(Purpose.RESET_PASSWORD, self._apply)
        self._uow = uow
        self._hasher = hasher
        self._sessions = sessions
        self._locks = locks
        self._events = events
        self._clock = clock
        # What a reset clears besides the lock: the address's failed-login counters of the rate limits.
        self._forget_login_failures: Callable[[str], object] = lambda email: None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def forget_login_failures_with(self, forget: Callable[[str], object]) -> None:
        """Set what clears an address's failed-login counters after a reset (the HTTP layer's limits)."""
        self._forget_login_failures = forget

    def forgot_password(self, email: str, request_id: str | None = None, *, by_support: bool = False) -> None:
        """Mail a reset code to the account of the address, if there is one. Answers alike, and after the
        same work, for every address: the relay looks the address up (see ``CodeAsks``).
        ``by_support``: a reset support forced, not held by the address's cooldown."""
        self._code_asks.ask(Purpose.RESET_PASSWORD, email, request_id, by_support=by_support)

    def _issue_reset_code(self, request: ResendRequest) -> None:
        user = self._users.by_email(request.email)
        # An account waiting for its erasure is kept by its restore link only.
        if user is None or user.expired(self._now()) or user.pending_deletion or user.frozen:
            return
        self._codes.issue_asked(Purpose.RESET_PASSWORD, user, request)

    def reset_password(
        self, email: str, code: str, new_password: str, device: Device, request_id: str | None = None
    ) -> bool:
        """Set the password the code proves the address's owner chose; False: no verdict in time (it is
        applied once judged). Every address is submitted to the worker, known or not, so that an unknown
        one answers like a known one without a live code (a wrong code counting down), after the same work."""
        email = normalize_email(email)
        user = self._users.by_email(email)
        change = PendingChange(
            new_submission_id(), Purpose.RESET_PASSWORD, self._now(), password_hash=self._hasher.hash(new_password)
        )
        if user is None or user.frozen:  # a frozen account waits for support: no code of it works either
            # The same steps as for an account: the change's two writes match no document (they take the
            # same store lock, so a busy store delays both alike), and the worker, finding no live code,
            # answers as for one: a wrong code, counting down.
            self._users.add_pending_change(NO_ACCOUNT, change)
            verdict = self._codes.judge(
                Purpose.RESET_PASSWORD, email, code=code, request_id=request_id, submission_id=change.submission_id
            )
            if verdict is None:
                return False
            self._users.discard_pending_change(NO_ACCOUNT, change.submission_id)
            raise error_for(verdict) if not verdict.verified else CodeExpired()
        proven = user.knows(device.key)
        outcome = self._verified_codes.submit(
            user, user.email, change, code=code, request_id=request_id, proven_device=proven
        )
        return outcome.applied

    def _apply(self, verified: Verified) -> bool:
        change = self._verified_codes.stored_change(verified)
        user_id = verified.user_id
        before = self._users.by_id(user_id)
        if change is None or change.password_hash is None or before is None:
            return False
        # One update: the new hash, the address proved, every earlier token refused, the
        # failed-login lock and streak ended, and the events of all that.
        announce = [
            self._events.entry(UserPasswordChanged, before, reason="reset"),
            *self._locks.unlocked_by_reset(before),
        ]
        updated = self._sessions.apply_reset(user_id, change, announce)
        if updated is None:
            return False
        log.info("password reset applied", extra={"user_id": user_id})
        # The owner proved the mailbox and chose the password: the failures an attacker piled on the
        # address must not refuse it (the lock ended in the update above).
        self._forget_login_failures(updated.email)
        verified_event = self._events.entry(UserVerified, updated)
        self._uow.commit_if(
            user_id, [verified_event], self._users.record_first_verification, user_id, self._now(), [verified_event]
        )
        return True
