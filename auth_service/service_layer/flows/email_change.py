"""Address change: the password, then a code to the new address and a notice to the current one; the code
applies the change, and the old address may undo it for the undo window ("this wasn't me").

The new address is stored on the account under the submission's id before the code is submitted, and
applied by ``_apply`` through the ``code.verified`` table (machinery: code_verified.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from auth_service.domain.accounts import LeftAddress, PendingChange, normalize_email
from auth_service.domain.errors import CodeExpired, EmailTaken, InvalidCredentials
from auth_service.domain.passwords import PasswordHasher
from auth_service.domain.recovery import refuse_while_recovering
from auth_service.ports import Accounts, PendingChanges
from auth_service.service_layer.capabilities import Authenticator
from auth_service.service_layer.code_verified import Outcome, Verified, VerifiedCodes
from auth_service.service_layer.codes import CodeClient, new_submission_id
from auth_service.service_layer.events import AccountEvents
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.messages import Purpose, UserEmailChanged
from common.notices import Notice

log = logging.getLogger(__name__)


class EmailChangeStore(Accounts, PendingChanges, Protocol):
    """The account-document ports this uses."""


class EmailChange:
    def __init__(
        self,
        users: EmailChangeStore,
        codes: CodeClient,
        verified_codes: VerifiedCodes,
        uow: UnitOfWork,
        hasher: PasswordHasher,
        sessions: Authenticator,
        events: AccountEvents,
        clock: Callable[[], float] = time.time,
        undo_window_seconds: int = 3 * 86400,
    ):
        self._users = users
        self._codes = codes
        self._verified_codes = verified_codes
        verified_codes.on(Purpose.CHANGE_EMAIL, self._apply)
        self._uow = uow
        self._hasher = hasher
        self._sessions = sessions
        self._events = events
        self._clock = clock
        self._undo_window = timedelta(seconds=undo_window_seconds)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def request_email_change(
        self, access_token: str | None, new_email: str, password: str, request_id: str | None = None
    ) -> None:
        """Mail a code to the new address and a notice to the current one; nothing changes before the code."""
        user = self._sessions.authenticate(access_token)
        refuse_while_recovering(user)
        if not self._hasher.verify(password, user.password_hash):
            raise InvalidCredentials("The password is incorrect.")
        new_email = normalize_email(new_email)
        holder = self._users.by_email(new_email)
        if holder is not None and holder.id != user.id and holder.verified:
            raise EmailTaken()
        if self._users.reserved_by(new_email, self._now()) not in (None, user.id):
            raise EmailTaken()  # another account left it within its undo window and may take it back
        self._codes.throttle(Purpose.CHANGE_EMAIL, new_email)
        entries = [
            self._codes.request(Purpose.CHANGE_EMAIL, user.id, new_email, user.name, request_id, locale=user.locale),
            self._codes.notice(
                Notice.EMAIL_CHANGE_REQUESTED, user.email, {"new_email": new_email}, request_id, locale=user.locale
            ),
        ]
        self._uow.commit(user.id, entries, self._users.request_email_change, user.id, new_email, entries)

    def confirm_email_change(self, access_token: str | None, code: str, request_id: str | None = None) -> Outcome:
        user = self._sessions.authenticate(access_token)
        refuse_while_recovering(user)
        if user.pending_email is None:
            raise CodeExpired()
        change = PendingChange(new_submission_id(), Purpose.CHANGE_EMAIL, self._now(), new_email=user.pending_email)
        outcome = self._verified_codes.submit(user, user.pending_email, change, code=code, request_id=request_id)
        if outcome.applied and outcome.user.email != change.new_email:
            # Verified, but a confirmed account took the address first (here or in the consumer).
            raise EmailTaken()
        return outcome

    def _apply(self, verified: Verified) -> bool:
        change = self._verified_codes.stored_change(verified)
        user_id, submission_id = verified.user_id, verified.submission_id
        if change is None or change.new_email is None:
            return False
        before = self._users.by_id(user_id)
        if before is None:
            return False
        now = self._now()
        if self._users.reserved_by(change.new_email, now) not in (None, user_id):
            self._users.discard_pending_change(user_id, submission_id)
            raise EmailTaken()
        announce = [
            self._codes.notice(
                Notice.EMAIL_CHANGED,
                before.email,
                {"new_email": change.new_email},
                locale=before.locale,
                user_id=user_id,
            ),
            self._events.entry(UserEmailChanged, before, email=change.new_email, old_email=before.email),
        ]
        # The old mailbox may undo the change for the undo window, and nobody else may take the address meanwhile.
        left = LeftAddress(before.email, now, now + self._undo_window)
        updated = self._uow.commit_if(
            user_id, announce, self._users.apply_email_change, user_id, change, now, announce, left=left
        )
        if updated is None:
            return False
        log.info("email address changed", extra={"user_id": user_id})
        return True
