"""The "this wasn't me" link of a security notice (new sign-in, password changed, address changed,
second factor turned on or off), and the contest link of an undo's notice.

The worker mints each link's token from the notice's message id under its key
and tells auth only the token's SHA-256 (``not_me.issued``, durable, before
the mail goes); auth keeps that digest, with the address the notice went to.
Like the verification link, opening the link shows a page whose one button
acts (mail scanners fetch links).

What a press does is decided by ``domain/recovery.py`` from the account as it
is read, and written in one update conditional on no other press having come
in between: the link spent and the account's other links voided (one undo per
incident), every token refused, trusted devices forgotten, pending changes
dropped, the password unusable until a reset, the address the link was mailed
to made the login again if the account left it within the undo window (a
pending registration holding it is removed first), a second factor turned off
turned on again, and the reset code and notices stored with it in the outbox.
An undo tells both addresses: the restored one, and the one it leaves, whose
notice carries a link that contests the undo and freezes the account for
support. The reset code goes only to the account's own login.

A second factor turned *on* is left on: the link would weaken the account, and
the factor's codes go to the owner's mailbox anyway.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from auth_service.domain.accounts import NotMeLink, User
from auth_service.domain.errors import EmailTaken, ServiceUnavailable
from auth_service.domain.recovery import EMAIL_CHANGE_UNDONE, Action, Plan, Press, Refusal, plan_press
from auth_service.ports import Accounts, OutboxEntry, RecoveryLinks
from auth_service.service_layer.capabilities import SessionEnder
from auth_service.service_layer.codes import CodeClient
from auth_service.service_layer.events import AccountEvents
from auth_service.service_layer.links import InvalidLink, LinkGone, link_owner
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.messages import NotMeIssued, Purpose, UserEmailChanged, UserSessionsRevoked
from common.notices import Notice

log = logging.getLogger(__name__)

# Presses that find the links changed under them read again; past this many, the owner is asked to retry.
MAX_PRESS_ROUNDS = 10


class NotMeStore(Accounts, RecoveryLinks, Protocol):
    """The account-document ports this uses."""


class LinkRefused(LinkGone):
    """A live link that can do nothing: its address is no longer the account's, or the account is frozen."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.value)
        self.refusal = refusal


class Done(enum.Enum):
    """What a press did, for its page."""

    SECURED = "secured"  # in place: sessions ended, password unusable, a reset code to the login
    RESTORED = "restored"  # the same, and the link's address is the login again
    CONTESTED = "contested"  # frozen for support
    NOT_RESTORED = "not_restored"  # another account holds the address: frozen for support, no code


class NotMeLinks:
    def __init__(
        self,
        users: NotMeStore,
        sessions: SessionEnder,
        codes: CodeClient,
        uow: UnitOfWork,
        events: AccountEvents,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        undo_window_seconds: int = 3 * 86400,
    ):
        # Told when a press took the address back from ``address`` (auth_service/service_layer/flows/deletion.py ends a
        # deletion that address confirmed).
        self.address_undone: Callable[[str, str], object] = lambda user_id, address: None
        self._users = users
        self._sessions = sessions
        self._codes = codes
        self._uow = uow
        self._events = events
        self._ttl = timedelta(seconds=ttl_seconds)
        self._window = timedelta(seconds=undo_window_seconds)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def issued(self, issued: NotMeIssued) -> None:
        """Keep the digest of a link the worker is mailing (idempotent: redeliveries add nothing).

        The contest link of an undo lives only as long as the undo window. (An address change's link
        can undo it only within the window too, which the account's address history decides, so that
        its page can say why it did nothing.)"""
        now = self._now()
        lifetime = self._ttl
        if issued.notice == EMAIL_CHANGE_UNDONE:
            lifetime = min(lifetime, self._window)
        link = NotMeLink(issued.digest, issued.email, issued.notice, now + lifetime)
        self._users.add_not_me(issued.user_id, link, now)

    def check(self, token: str | None) -> NotMeLink:
        """The live link to show the button for. Reads only: scanners fetch links."""
        owner = link_owner(token)
        if owner is None:
            raise InvalidLink()
        found = self._users.not_me_links(owner[0])
        if found is None:
            raise LinkGone()
        user, links, _ = found
        plan = plan_press(user, links, owner[1], self._now())
        if isinstance(plan, Refusal):
            raise LinkGone() if plan is Refusal.GONE else LinkRefused(plan)
        return plan.link

    def act(self, token: str | None, request_id: str | None = None) -> Done:
        """Press the link: see the module's docstring. Raises ``LinkGone`` (or ``LinkRefused``) when it
        can do nothing."""
        owner = link_owner(token)
        if owner is None:
            raise InvalidLink()
        user_id, digest = owner
        for _ in range(MAX_PRESS_ROUNDS):
            found = self._users.not_me_links(user_id)
            if found is None:
                raise LinkGone()
            user, links, version = found
            now = self._now()
            plan = plan_press(user, links, digest, now)
            if isinstance(plan, Refusal):
                raise LinkGone() if plan is Refusal.GONE else LinkRefused(plan)
            done = self._carry_out(user, plan, version, now, request_id)
            if done is not None:
                return done
        raise ServiceUnavailable("The account is changing right now. Press the button again in a moment.")

    def _carry_out(self, user: User, plan: Plan, version: int, now: datetime, request_id: str | None) -> Done | None:
        """Write the plan in one update; None if another press (or a new link) changed the links first."""
        log.warning(
            "'this wasn't me' link used",
            extra={"user_id": user.id, "notice": plan.link.notice, "action": plan.action.value},
        )
        # Announced in the same write as the version bump that refuses every earlier token.
        revoked = self._events.entry(UserSessionsRevoked, user, all_sessions=True, reason="not_me")
        mfa_on = plan.link.notice == Notice.MFA_DISABLED and plan.action is not Action.CONTEST
        press = Press(version, plan.links, plan.history, now, mfa_on)
        users = self._users
        if plan.action is Action.CONTEST:
            entries = [revoked, *self._frozen_notices(user, {user.email, plan.link.email}, request_id)]
            updated = self._uow.commit_if(user.id, entries, users.freeze, user.id, press, entries)
            done = Done.CONTESTED
        elif plan.action is Action.RESTORE:
            # The address is the account's again: a registration that took it meanwhile gives way.
            if self._users.evict_pending(plan.link.email, user.id):
                log.warning("a pending registration of the address taken back gave way", extra={"user_id": user.id})
            entries = [revoked, *self._restore_entries(user, plan.link.email, request_id)]
            try:
                updated = self._uow.commit_if(
                    user.id, entries, users.restore_address, user.id, press, plan.link.email, entries
                )
            except EmailTaken:
                log.warning("address change not undone: another account holds the address", extra={"user_id": user.id})
                entries = [revoked, *self._frozen_notices(user, {user.email}, request_id)]
                press = Press(version, plan.links, plan.history, now, mfa_on=False)
                updated = self._uow.commit_if(user.id, entries, users.freeze, user.id, press, entries)
                done = Done.NOT_RESTORED
            else:
                done = Done.RESTORED
        else:
            entries = [revoked, self._reset_code(user, user.email, request_id)]
            updated = self._uow.commit_if(user.id, entries, users.secure, user.id, press, entries)
            done = Done.SECURED
        if updated is None:
            return None
        self._sessions.end_sessions_below(user.id, updated.token_version, "not_me")
        if done is Done.RESTORED:
            self.address_undone(user.id, user.email)
        if mfa_on:
            log.warning("second factor turned back on by a 'this wasn't me' link", extra={"user_id": user.id})
        return done

    def _restore_entries(self, user: User, restored: str, request_id: str | None) -> list[OutboxEntry]:
        """An undo's messages: the event, a notice to each address, and the reset code to the restored login."""
        return [
            self._events.entry(UserEmailChanged, user, email=restored, old_email=user.email),
            self._codes.notice(
                Notice.EMAIL_RESTORED, restored, {"left_email": user.email}, request_id, locale=user.locale
            ),
            # A security notice: the worker mints its link, which contests the undo.
            self._codes.notice(
                EMAIL_CHANGE_UNDONE,
                user.email,
                {"restored_email": restored},
                request_id,
                locale=user.locale,
                user_id=user.id,
            ),
            self._reset_code(user, restored, request_id),
        ]

    def _frozen_notices(self, user: User, addresses: set[str], request_id: str | None) -> list[OutboxEntry]:
        return [
            self._codes.notice(Notice.ACCOUNT_FROZEN, address, {}, request_id, locale=user.locale)
            for address in sorted(addresses)
        ]

    def _reset_code(self, user: User, email: str, request_id: str | None) -> OutboxEntry:
        """The reset code of a press, to the account's own login after the press (never another's)."""
        return self._codes.request(Purpose.RESET_PASSWORD, user.id, email, request_id=request_id, locale=user.locale)
