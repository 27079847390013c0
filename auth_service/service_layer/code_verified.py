"""What a verified code applies, by purpose: the ``code.verified`` handler table, and one code submission.

A flow that proves an address with a code stores what the code will apply on the account, under the
submission's id, before submitting it (a reset's new password hash, an address change's new address),
and registers its applier here at wiring time. The applier runs when the verdict reaches the request
in time, or when auth's consumer gets the worker's durable ``code.verified``: whichever comes first
applies it; the second finds the stored change gone and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from auth_service.domain.accounts import PendingChange, User
from auth_service.domain.errors import CodeExpired
from auth_service.ports import Accounts, PendingChanges
from auth_service.service_layer.codes import CodeClient, error_for, new_submission_id
from common.messaging.messages import Purpose

log = logging.getLogger(__name__)


class CodeVerifiedStore(Accounts, PendingChanges, Protocol):
    """The account-document ports this uses."""


@dataclass(frozen=True)
class Verified:
    """A code the worker verified: by the request's verdict or by ``code.verified``.

    ``sequence`` and ``confirmation`` concern a registration's code only: it verifies the account if it
    was issued for the account's current registration, and leaves auth's keyed hash of the code."""

    purpose: Purpose
    user_id: str
    submission_id: str
    email: str | None
    sequence: int | None = None
    confirmation: str | None = None


Applier = Callable[[Verified], bool]


@dataclass(frozen=True)
class Outcome:
    """The end of a code submission: ``applied`` False means no verdict in time (the code is still judged)."""

    applied: bool
    user: User


class VerifiedCodes:
    """The handler table, purpose -> applier. Each applier is idempotent by submission id and answers
    True if this call changed the account."""

    def __init__(self, users: CodeVerifiedStore, codes: CodeClient):
        self._users = users
        self._codes = codes
        # A sign-in code opens a session for the request that submitted it (flows/sign_in.py): there is
        # nothing stored for the consumer to apply.
        self._appliers: dict[Purpose, Applier] = {Purpose.SIGN_IN: lambda verified: False}

    def on(self, purpose: Purpose, apply: Applier) -> None:
        self._appliers[purpose] = apply

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
        """Apply what a verified code of ``purpose`` proves; True if this call changed the account."""
        verified = Verified(purpose, user_id, submission_id or "", email, sequence, confirmation)
        return self._appliers[purpose](verified)

    def stored_change(self, verified: Verified) -> PendingChange | None:
        """The change a flow stored for this submission, if it is still there and is for the proved address."""
        change = self._users.pending_change(verified.user_id, verified.submission_id)
        if change is None:
            return None
        expected = change.new_email if change.purpose is Purpose.CHANGE_EMAIL else None
        if expected is not None and verified.email is not None and verified.email != expected:
            log.warning("verified code for another address than the stored change, ignored")
            return None
        return change

    def submit(
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
        """Store ``change``, submit the code (or link) mailed to ``email`` for its purpose (a registration's
        without a change), and apply it if the verdict comes in time and is for this account."""
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
