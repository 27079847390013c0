"""The "this wasn't me" link of a security notice (new sign-in, password changed, address changed,
second factor turned on or off).

The worker mints each link's token from the notice's message id under its key
and tells auth only the token's SHA-256 (``not_me.issued``, durable, before
the mail goes); auth keeps that digest, with the address the notice went to,
for ``NOT_ME_TTL_SECONDS``. Like the verification link, opening the link shows
a page whose one button acts (mail scanners fetch links); pressing it spends
the link, once, ends every session and token of the account, forgets every
device trusted by the second factor, undoes an address change (the old address
is the login again) or a second factor turned off (on again), and mails a
password-reset code to the address that received the notice.

A second factor turned *on* is left on: the link would weaken the account, and
the factor's codes go to the owner's mailbox anyway, so whoever turned it on
gains nothing from it; the owner turns it off after signing in again if they
want it off.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from auth_service.codes import CodeClient
from auth_service.domain.accounts import NotMeLink, User
from auth_service.events import AccountEvents
from auth_service.lifecycle import InvalidLink
from auth_service.outbox import Outbox
from auth_service.ports import UserRepository
from auth_service.sessions import SessionService
from auth_service.sign_in import MFA_DISABLED
from common.links import parse_link_token_reference
from common.messaging.messages import NotMeIssued, Purpose, UserEmailChanged

log = logging.getLogger(__name__)

EMAIL_CHANGED_NOTICE = "email_changed"


class LinkGone(Exception):
    """A well-formed link that is used, expired or unknown (410 page)."""


class NotMeLinks:
    def __init__(
        self,
        users: UserRepository,
        sessions: SessionService,
        codes: CodeClient,
        outbox: Outbox,
        events: AccountEvents,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ):
        # Told when the link took the address back from ``address`` (auth_service/deletion.py ends a
        # deletion that address confirmed).
        self.address_undone: Callable[[str, str], object] = lambda user_id, address: None
        self._users = users
        self._sessions = sessions
        self._codes = codes
        self._outbox = outbox
        self._events = events
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def issued(self, issued: NotMeIssued) -> None:
        """Keep the digest of a link the worker is mailing (idempotent: redeliveries add nothing)."""
        now = self._now()
        link = NotMeLink(issued.digest, issued.email, issued.notice, now + self._ttl)
        self._users.add_not_me(issued.user_id, link, now)

    def check(self, token: str | None) -> None:
        """Is this a live link of ours, to show the button for? Reads only: scanners fetch links."""
        owner = _owner(token)
        if owner is None:
            raise InvalidLink()
        if self._users.not_me(owner[0], owner[1], self._now()) is None:
            raise LinkGone()

    def act(self, token: str | None, request_id: str | None = None) -> str:
        """Spend the link: every session and token of the account ends, every trusted device is
        forgotten, an address change or a second factor turned off is undone, and a reset code goes
        to the notice's address, which is returned."""
        owner = _owner(token)
        if owner is None:
            raise InvalidLink()
        user_id, digest = owner
        link = self._users.use_not_me(user_id, digest, self._now())
        if link is None:
            raise LinkGone()
        try:
            return self._secure(user_id, link, request_id)
        except Exception:
            # Half done (a database blip): the owner's retry must find the link alive and do it all.
            try:
                self._users.unuse_not_me(user_id, digest)
            except Exception:
                log.exception("'this wasn't me' link left spent after a failure", extra={"user_id": user_id})
            raise

    def _secure(self, user_id: str, link: NotMeLink, request_id: str | None) -> str:
        user = self._users.by_id(user_id)
        if user is None:
            raise LinkGone()
        log.warning("'this wasn't me' link used", extra={"user_id": user_id, "notice": link.notice})
        self._sessions.revoke_all_sessions(user_id, "not_me")
        self._users.forget_devices(user_id)
        if link.notice == EMAIL_CHANGED_NOTICE and user.email != link.email:
            taken_from = user.email
            user = self._undo_email_change(user, link.email) or user
            if user.email != taken_from:
                self.address_undone(user_id, taken_from)
        elif link.notice == MFA_DISABLED and self._users.restore_mfa(user_id, link.email):
            # Only while the notice's address is still the login: its codes go there.
            log.warning("second factor turned back on by a 'this wasn't me' link", extra={"user_id": user_id})
        # To the address that got the notice, whatever the account's address is now.
        request = self._codes.request(Purpose.RESET_PASSWORD, user_id, link.email, request_id=request_id)
        self._codes.issue(user_id, request)
        return link.email

    def _undo_email_change(self, user: User, old_email: str) -> User | None:
        event = self._events.entry(UserEmailChanged, user, email=old_email, old_email=user.email)
        restored = self._users.restore_email(user.id, old_email, self._now(), [event], self._outbox.relay_after())
        if restored is None:
            log.warning("address change not undone: the old address has another account", extra={"user_id": user.id})
            return None
        self._outbox.deliver(user.id, event)
        return restored


def _owner(token: str | None) -> tuple[str, str] | None:
    """(account id, digest of the token) of a link's token, or None for anything that is no token of ours."""
    reference = parse_link_token_reference(token)
    if reference is None:
        return None
    user_id, secret = reference
    return user_id, hashlib.sha256(secret.encode()).hexdigest()
