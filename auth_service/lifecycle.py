"""The account's life after registration: password reset, address change, confirmation by link.

Each flow proves an address with a code through ``CodeClient``; what differs is
what a verified code applies. That is stored on the account, under the
submission's id, before the code is submitted (a reset's new password hash, an
address change's new address), and applied by ``apply_verified``: by the
request when the verdict reaches it in time, and by auth's consumer when the
worker's durable ``code.verified`` arrives. Whichever comes first applies it;
the second finds the stored change gone and does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auth_service.code_asks import CodeAsks
from auth_service.codes import CodeClient, error_for, new_submission_id
from auth_service.domain.accounts import LeftAddress, PendingChange, User, normalize_email
from auth_service.domain.devices import Device
from auth_service.domain.errors import CodeExpired, EmailTaken, InvalidCredentials
from auth_service.domain.passwords import PasswordHasher
from auth_service.domain.recovery import refuse_while_recovering
from auth_service.events import AccountEvents
from auth_service.logins import FailedLogins
from auth_service.outbox import Outbox
from auth_service.ports import ResendRequest, UserRepository
from auth_service.sessions import SessionService
from common.links import parse_link_token_reference
from common.messaging.messages import Purpose, UserEmailChanged, UserPasswordChanged, UserVerified

log = logging.getLogger(__name__)

EMAIL_CHANGE_REQUESTED = "email_change_requested"
# No account has this id (ids are 32 hex digits): what a reset for an unknown address writes to.
NO_ACCOUNT = "no-account"
EMAIL_CHANGED = "email_changed"


class InvalidLink(Exception):
    """The verification link's token is no token of ours (400 page)."""


@dataclass(frozen=True)
class Outcome:
    """The end of a code submission: ``applied`` False means no verdict in time (the code is still judged)."""

    applied: bool
    user: User


class AccountLifecycle:
    def __init__(
        self,
        users: UserRepository,
        codes: CodeClient,
        outbox: Outbox,
        hasher: PasswordHasher,
        sessions: SessionService,
        code_asks: CodeAsks,
        failed_logins: FailedLogins,
        mark_verified: Callable[[User, int, str | None], bool],
        clock: Callable[[], float] = time.time,
        events: AccountEvents | None = None,
        undo_window_seconds: int = 3 * 86400,
    ):
        self._users = users
        self._undo_window = timedelta(seconds=undo_window_seconds)
        self._failed_logins = failed_logins
        self._mark_verified = mark_verified
        self._events = events if events is not None else AccountEvents(clock)
        self._code_asks = code_asks
        code_asks.on(Purpose.RESET_PASSWORD, self._issue_reset_code)
        self._codes = codes
        self._outbox = outbox
        self._hasher = hasher
        self._sessions = sessions
        self._clock = clock
        # What a reset clears besides the lock: the address's failed-login counters of the rate limits.
        self._forget_login_failures: Callable[[str], object] = lambda email: None
        self._appliers: dict[Purpose, Callable[[str, str, str | None], bool]] = {
            Purpose.RESET_PASSWORD: self._apply_reset,
            Purpose.CHANGE_EMAIL: self._apply_email_change,
            # A sign-in code opens a session for the request that submitted it (auth_service/sign_in.py):
            # there is nothing stored for the consumer to apply.
            Purpose.SIGN_IN: lambda user_id, submission_id, email: False,
        }

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def on_verified(self, purpose: Purpose, apply: Callable[[str, str, str | None], bool]) -> None:
        """What a verified code of ``purpose`` applies, for a flow that lives in a module of its own
        (account deletion): ``apply(user_id, submission_id, email)``, idempotent by submission id."""
        self._appliers[purpose] = apply

    def submit_code(
        self, user: User, email: str, change: PendingChange, code: str, request_id: str | None = None
    ) -> Outcome:
        """Store ``change``, submit the code mailed to ``email`` for its purpose, and apply it if verified."""
        return self._submit(user, email, change, code=code, request_id=request_id)

    def forget_login_failures_with(self, forget: Callable[[str], object]) -> None:
        """Set what clears an address's failed-login counters after a reset (the HTTP layer's limits)."""
        self._forget_login_failures = forget

    # --- password reset ---

    def forgot_password(self, email: str, request_id: str | None = None) -> None:
        """Mail a reset code to the account of the address, if there is one. Answers alike, and after the
        same work, for every address: the relay looks the address up (see ``CodeAsks``)."""
        self._code_asks.ask(Purpose.RESET_PASSWORD, email, request_id)

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
        return self._submit(user, user.email, change, code=code, request_id=request_id, proven_device=proven).applied

    # --- address change ---

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
                EMAIL_CHANGE_REQUESTED, user.email, {"new_email": new_email}, request_id, locale=user.locale
            ),
        ]
        self._users.request_email_change(user.id, new_email, entries, publish_after=self._outbox.relay_after())
        for entry in entries:
            self._outbox.deliver(user.id, entry)

    def confirm_email_change(self, access_token: str | None, code: str, request_id: str | None = None) -> Outcome:
        user = self._sessions.authenticate(access_token)
        refuse_while_recovering(user)
        if user.pending_email is None:
            raise CodeExpired()
        change = PendingChange(new_submission_id(), Purpose.CHANGE_EMAIL, self._now(), new_email=user.pending_email)
        outcome = self._submit(user, user.pending_email, change, code=code, request_id=request_id)
        if outcome.applied and outcome.user.email != change.new_email:
            # Verified, but a confirmed account took the address first (here or in the consumer).
            raise EmailTaken()
        return outcome

    # --- confirmation by link ---

    def check_link(self, token: str | None) -> None:
        """Is this a link of ours to show the confirm button for? Reads, never submits: scanners fetch links."""
        if self._link_owner(token) is None:
            raise InvalidLink()

    def confirm_by_link(self, token: str | None, request_id: str | None = None) -> Outcome:
        owner = self._link_owner(token)
        if owner is None:
            raise InvalidLink()
        user, link_token = owner
        if user.verified:
            raise CodeExpired()  # the link (or the code) was used: a link works once
        return self._submit(user, user.email, None, link_token=link_token, request_id=request_id)

    def _link_owner(self, token: str | None) -> tuple[User, str] | None:
        reference = parse_link_token_reference(token)
        if reference is None:
            return None
        user_id, link_token = reference
        user = self._users.by_id(user_id)
        return None if user is None else (user, link_token)

    # --- one submission, and applying what it proves ---

    def _submit(
        self,
        user: User,
        email: str,
        change: PendingChange | None,
        *,
        code: str | None = None,
        link_token: str | None = None,
        request_id: str | None = None,
        proven_device: bool = False,
    ) -> Outcome:
        purpose = change.purpose if change is not None else Purpose.VERIFY_EMAIL
        submission_id = change.submission_id if change is not None else new_submission_id()
        if change is not None:
            self._users.add_pending_change(user.id, change)
        verdict = self._codes.judge(
            purpose,
            email,
            code=code,
            link_token=link_token,
            user_id=user.id,
            request_id=request_id,
            submission_id=submission_id,
            proven_device=proven_device,
        )
        if verdict is None:
            return Outcome(False, user)
        if not verdict.verified or verdict.user_id != user.id:
            if change is not None:
                self._users.discard_pending_change(user.id, submission_id)
            # A code applies only to the account it was issued for, never to whoever holds the address now.
            raise error_for(verdict) if not verdict.verified else CodeExpired()
        self.apply_verified(purpose, user.id, submission_id, email, sequence=verdict.sequence)
        return Outcome(True, self._users.by_id(user.id) or user)

    def apply_verified(
        self,
        purpose: Purpose,
        user_id: str,
        submission_id: str | None,
        email: str | None,
        *,
        sequence: int | None = None,
        confirmation: str | None = None,
    ) -> bool:
        """Apply what a verified code of ``purpose`` proves; True if this call changed the account.

        Idempotent by submission id: the request and the consumer both call it. A registration's
        code verifies the account only if it was issued for the account's current registration
        (``sequence``; a message without one applies only to an account stored before they
        existed), and leaves ``confirmation``, auth's keyed hash of the code, on the account."""
        if purpose is Purpose.VERIFY_EMAIL:
            user = self._users.by_id(user_id)
            return user is not None and self._mark_verified(user, sequence or 0, confirmation)
        return self._appliers[purpose](user_id, submission_id or "", email)

    def _stored_change(self, user_id: str, submission_id: str, email: str | None) -> PendingChange | None:
        change = self._users.pending_change(user_id, submission_id)
        if change is None:
            return None
        expected = change.new_email if change.purpose is Purpose.CHANGE_EMAIL else None
        if expected is not None and email is not None and email != expected:
            log.warning("verified code for another address than the stored change, ignored")
            return None
        return change

    def _apply_reset(self, user_id: str, submission_id: str, email: str | None) -> bool:
        change = self._stored_change(user_id, submission_id, email)
        before = self._users.by_id(user_id)
        if change is None or change.password_hash is None or before is None:
            return False
        # One update: the new hash, the address proved, every earlier token refused, the
        # failed-login lock and streak ended, and the events of all that.
        announce = [
            self._events.entry(UserPasswordChanged, before, reason="reset"),
            *self._failed_logins.unlocked_by_reset(before),
        ]
        updated = self._sessions.apply_reset(user_id, change, announce)
        if updated is None:
            return False
        log.info("password reset applied", extra={"user_id": user_id})
        # The owner proved the mailbox and chose the password: the failures an attacker piled on the
        # address must not refuse it (the lock ended in the update above).
        self._forget_login_failures(updated.email)
        verified = self._events.entry(UserVerified, updated)
        if self._users.record_first_verification(user_id, self._now(), [verified], self._outbox.relay_after()):
            self._outbox.deliver(user_id, verified)
        return True

    def _apply_email_change(self, user_id: str, submission_id: str, email: str | None) -> bool:
        change = self._stored_change(user_id, submission_id, email)
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
                EMAIL_CHANGED, before.email, {"new_email": change.new_email}, locale=before.locale, user_id=user_id
            ),
            self._events.entry(UserEmailChanged, before, email=change.new_email, old_email=before.email),
        ]
        # The old mailbox may undo the change for the undo window, and nobody else may take the address meanwhile.
        left = LeftAddress(before.email, now, now + self._undo_window)
        updated = self._users.apply_email_change(
            user_id, change, now, announce, publish_after=self._outbox.relay_after(), left=left
        )
        if updated is None:
            return False
        log.info("email address changed", extra={"user_id": user_id})
        self._outbox.deliver_all(user_id, announce)
        return True
