"""Sessions: the token pair a login opens, refresh with rotation and reuse detection, logout,
the Bearer check, and the one way to refuse every token of an account (password change and reset).

Two things make a token refused, and each is one MongoDB write:
- a session (family) ended: logout, reuse detected, or every session of an
  account ended by ``revoke_all_sessions``/``set_password``;
- the account's token version raised: every access token and refresh token
  carries the version it was issued under, and one with an older version is
  refused. The version rises in the same update that writes a new password hash.

A successor token and its access token carry the version of the token they
replace, never the account's current one, so a refresh racing a password
change can only produce tokens that the change has already made invalid.

Every access token names its session (``sid``). A session that ends alone
(logout, reuse detected) is added to ``EndedSessions``, the in-memory set the
Bearer check consults, and announced as ``user.sessions_revoked`` so that the
other replicas add it too; the ends that take every session with them
announce ``all`` in the same write as the version bump. A session ends
``SESSION_MAX_AGE_SECONDS`` after its login however often it is refreshed:
no refresh or access token it is given outlives that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from auth_service.domain.accounts import PendingChange, User
from auth_service.domain.activity import LOGIN
from auth_service.domain.devices import Device
from auth_service.domain.errors import (
    AccountDisabled,
    AccountPendingDeletion,
    InvalidCredentials,
    InvalidTokenError,
    NotFound,
    PasswordUnchanged,
)
from auth_service.domain.passwords import PasswordHasher
from auth_service.domain.sessions import (
    Presented,
    RefreshRecord,
    Session,
    TokenPair,
    judge_presented,
    new_family_id,
    new_refresh_token,
    refresh_token_hash,
)
from auth_service.domain.tokens import AccessClaims, InvalidToken, TokenIssuer
from auth_service.ports import Accounts, Credentials, OutboxEntry, SessionRepository
from auth_service.service_layer.activity import ActivityLog
from auth_service.service_layer.events import AccountEvents
from auth_service.service_layer.session_ends import EndedSessions
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.messages import UserPasswordChanged, UserSessionsRevoked

log = logging.getLogger(__name__)

REFRESH_REFUSED = "The refresh token is not valid. Log in again."


class SessionsStore(Accounts, Credentials, Protocol):
    """The account-document ports this uses."""


@dataclass(frozen=True)
class SessionPolicy:
    refresh_ttl_seconds: int
    reuse_grace_seconds: int
    max_age_seconds: int = 90 * 86400


class SessionService:
    def __init__(
        self,
        users: SessionsStore,
        sessions: SessionRepository,
        tokens: TokenIssuer,
        hasher: PasswordHasher,
        policy: SessionPolicy,
        uow: UnitOfWork,
        ended: EndedSessions,
        clock: Callable[[], float] = time.time,
        events: AccountEvents | None = None,
        activity: ActivityLog | None = None,
    ):
        self._activity = activity
        self._users = users
        self.ended = ended
        self._uow = uow
        self._events = events if events is not None else AccountEvents(clock)
        self._sessions = sessions
        self._tokens = tokens
        self._hasher = hasher
        self._refresh_ttl = timedelta(seconds=policy.refresh_ttl_seconds)
        self._grace = timedelta(seconds=policy.reuse_grace_seconds)
        self._max_age = timedelta(seconds=policy.max_age_seconds)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def open(self, user: User, device: Device | None = None) -> TokenPair:
        """Start a session for a user who just proved who they are, on ``device``. The one way every sign-in
        opens a session: an account waiting for its erasure gets none, whichever way it proved itself."""
        if user.pending_deletion:
            raise AccountPendingDeletion()
        now = self._now()
        if user.disabled(now):
            raise AccountDisabled()
        session = Session(
            new_family_id(),
            user.id,
            user.token_version,
            now,
            now + self._refresh_ttl,
            device=device.label if device is not None else None,
            device_key=device.key if device is not None else None,
            ip=device.ip if device is not None else None,
            last_used_at=now,
        )
        refresh_token = new_refresh_token()
        self._sessions.start(session, self._record(refresh_token, session, user, now))
        self._record_activity(user.id, LOGIN)
        return self._pair(user.id, user.token_version, refresh_token, session)

    def _record_activity(self, user_id: str, kind: str) -> None:
        if self._activity is not None:
            self._activity.record(user_id, kind)

    # --- the account's own view of its sessions ---

    def list_sessions(self, access_token: str | None) -> tuple[list[Session], str]:
        """The caller's account's sessions that can still refresh, newest first, and the caller's own (``sid``)."""
        user, current = self.caller(access_token)
        return self._sessions.live_of(user.id, user.token_version, self._now()), current

    def end_own_session(self, access_token: str | None, session_id: str) -> None:
        """End one of the account's sessions: its refresh token and, at once, its access tokens are refused.
        ``NotFound`` for one that is unknown, ended, or another account's."""
        user, _ = self.caller(access_token)
        found = self._sessions.session(session_id)
        if found is None or found.user_id != user.id or not found.in_use(user.token_version, self._now()):
            raise NotFound("No such session.")
        if self.end_session(user.id, session_id, "revoked"):
            log.info("session ended by its owner", extra={"user_id": user.id, "session_id": session_id})

    def end_other_sessions(self, access_token: str | None) -> int:
        """End every session of the account but the caller's; returns how many ended."""
        user, current = self.caller(access_token)
        others = [
            session.family_id
            for session in self._sessions.live_of(user.id, user.token_version, self._now())
            if session.family_id != current
        ]
        ended = sum(1 for session_id in others if self.end_session(user.id, session_id, "revoked"))
        if ended:
            log.info("other sessions ended by their owner", extra={"user_id": user.id, "sessions_ended": ended})
        return ended

    def refresh(self, refresh_token: str, ip: str | None = None) -> TokenPair:
        """Rotate: the presented token is spent and a new pair of the same session is answered.

        Of parallel refreshes of one token, exactly one claims it (an atomic
        find-and-modify). The others find it used: inside the grace window they
        are answered with a pair of their own in the same session (the client
        that lost the first answer can go on); after it, the session ends.
        """
        now = self._now()
        token_hash = refresh_token_hash(refresh_token)
        claimed = self._sessions.claim(token_hash, now)
        if claimed is not None:
            return self._successor(claimed, now, ip)
        presented = self._sessions.find(token_hash)
        verdict = judge_presented(presented, now, self._grace)
        if presented is None:
            raise InvalidTokenError(REFRESH_REFUSED)
        if verdict is Presented.RETRY_WITHIN_GRACE:
            return self._successor(presented, now, ip)
        if verdict is Presented.REUSED and self.end_session(presented.user_id, presented.family_id, "reuse_detected"):
            log.warning(
                "used refresh token presented again after the grace window: session ended",
                extra={"user_id": presented.user_id, "session_id": presented.family_id},
            )
        raise InvalidTokenError(REFRESH_REFUSED)

    def logout(self, refresh_token: str) -> None:
        """End the session the token belongs to, whether it is current, used or expired; unknown: nothing."""
        record = self._sessions.find(refresh_token_hash(refresh_token))
        if record is not None:
            self.end_session(record.user_id, record.family_id, "logout")

    def end_session(self, user_id: str, session_id: str, reason: str) -> bool:
        """End one session (logout, reuse detected, and any later way of ending a single session):
        refused here at once, announced to the other replicas and services. The event is stored
        before the end is written, so an end is never left unannounced; an end that another request
        wrote first is announced by that one. True if this call ended it."""
        session = self._sessions.session(session_id)
        if session is None or not session.live:
            return False
        user = self._users.by_id(user_id)
        announce = []
        if user is not None:
            announce.append(self._events.entry(UserSessionsRevoked, user, session_ids=(session_id,), reason=reason))
        return self._uow.announce(user_id, announce, then=lambda: self._end(session_id, reason))

    def _end(self, session_id: str, reason: str) -> bool:
        ended = self._sessions.end(session_id, self._now(), reason)
        self.ended.add([session_id])
        return ended

    def authenticate(self, access_token: str | None) -> User:
        """The account behind a Bearer token that is well signed, unexpired and of the current version."""
        return self.caller(access_token)[0]

    def caller(self, access_token: str | None) -> tuple[User, str]:
        """The account behind a Bearer token, as ``authenticate``, and the session it belongs to (``sid``)."""
        if not access_token:
            raise InvalidTokenError()
        try:
            claims = self._tokens.verify(access_token)
        except InvalidToken:
            raise InvalidTokenError() from None
        if self.ended.ended(claims.session_id):
            raise InvalidTokenError()
        found = self._live_claims(claims)
        if found is None:
            raise InvalidTokenError()
        return found, claims.session_id

    def introspect(self, access_token: str) -> tuple[AccessClaims, User] | None:
        """The claims and account of an access token that is live now: well signed, unexpired, of a session
        not ended, of the account's current token version, of an account that exists and is not disabled."""
        try:
            claims = self._tokens.verify(access_token)
        except InvalidToken:
            return None
        if self.ended.ended(claims.session_id):
            return None
        user = self._live_claims(claims)
        return (claims, user) if user is not None else None

    def _live_claims(self, claims: AccessClaims) -> User | None:
        user = self._users.by_id(claims.subject)
        if user is None or user.token_version != claims.token_version or user.disabled(self._now()):
            return None
        return user

    def sessions_of(self, user_id: str) -> list[Session]:
        """The account's sessions that can still refresh, newest first (support's view)."""
        user = self._users.by_id(user_id)
        if user is None:
            raise NotFound("No such account.")
        return self._sessions.live_of(user.id, user.token_version, self._now())

    def token_subject(self, access_token: str) -> str | None:
        """The account a well-signed, unexpired access token names, without a database read (rate limits)."""
        try:
            return self._tokens.verify(access_token).subject
        except InvalidToken:
            return None

    def change_password(
        self, access_token: str | None, current_password: str, new_password: str, device: Device | None = None
    ) -> TokenPair:
        """Replace the password; every earlier token is refused from then on, and the answer is the new pair."""
        user = self.authenticate(access_token)
        if not self._hasher.verify(current_password, user.password_hash):
            raise InvalidCredentials("The current password is incorrect.")
        if new_password == current_password:
            raise PasswordUnchanged()
        # Conditional on the version the caller's token carries: of two changes racing on
        # one token, the second finds its token already refused.
        updated = self._revoke(
            user.id,
            "password_changed",
            self._users.change_password,
            self._hasher.hash(new_password),
            user.token_version,
            announce=[self._events.entry(UserPasswordChanged, user, reason="change")],
            user=user,
        )
        if updated is None:
            raise InvalidTokenError()
        return self.open(updated, device)

    def set_password(
        self, user_id: str, new_password: str, reason: str, expected_version: int | None = None
    ) -> User | None:
        """Write a new password and refuse every token issued before, in one update (change and reset).

        Returns the updated user, or None if there is no such user (at ``expected_version``)."""
        return self._revoke(
            user_id, reason, self._users.change_password, self._hasher.hash(new_password), expected_version
        )

    def apply_reset(self, user_id: str, reset: PendingChange, announce: list[OutboxEntry]) -> User | None:
        """Write the password a reset stored and refuse every token issued before, in one update with
        ``announce`` (its events), once: None if the reset is no longer stored (applied already, by
        the request or the consumer)."""
        return self._revoke(user_id, "password_reset", self._users.apply_reset, reset, announce=announce)

    def revoke_all_sessions(self, user_id: str, reason: str) -> User | None:
        """Refuse every access and refresh token of the account, keeping its password."""
        return self._revoke(user_id, reason, self._users.revoke_tokens)

    def end_sessions_below(self, user_id: str, token_version: int, reason: str) -> int:
        """End every session opened under an earlier token version (an update that raised the version
        already refuses their tokens; this records when and why each ended)."""
        return self._sessions.end_all(user_id, below_version=token_version, at=self._now(), reason=reason)

    def _revoke(
        self,
        user_id: str,
        reason: str,
        write: Callable[..., User | None],
        *args: object,
        announce: list[OutboxEntry] | None = None,
        user: User | None = None,
    ) -> User | None:
        """``write(user_id, now, *args, outbox, publish_after=...)``, one of the writes that refuse every
        earlier token, announced with ``user.sessions_revoked``; then the account's sessions ended."""
        now = self._now()
        user = user if user is not None else self._users.by_id(user_id)
        if user is None:
            return None
        # Announced in the same write as the version bump that refuses every earlier token.
        revoked = self._events.entry(UserSessionsRevoked, user, all_sessions=True, reason=reason)
        announce = [*(announce or []), revoked]
        updated = self._uow.commit_if(user_id, announce, write, user_id, now, *args, announce)
        if updated is None:
            return None
        # The version bump alone refuses every earlier token; ending the sessions too records
        # when and why each one ended, where an operator looks for it.
        ended = self._sessions.end_all(user_id, below_version=updated.token_version, at=now, reason=reason)
        log.info(
            "every earlier token of the account refused",
            extra={"user_id": user_id, "reason": reason, "sessions_ended": ended},
        )
        return updated

    def _successor(self, spent: RefreshRecord, now: datetime, ip: str | None) -> TokenPair:
        session = self._sessions.session(spent.family_id)
        user = self._users.by_id(spent.user_id)
        if session is None or not session.live or user is None or user.token_version != spent.token_version:
            raise InvalidTokenError(REFRESH_REFUSED)
        if now >= self._session_end(session):
            raise InvalidTokenError(REFRESH_REFUSED)
        refresh_token = new_refresh_token()
        record = self._record(refresh_token, session, user, now, spent)
        self._sessions.add(record, ip)
        return self._pair(user.id, spent.token_version, refresh_token, session)

    def _session_end(self, session: Session) -> datetime:
        """SESSION_MAX_AGE_SECONDS after the login, whatever its refreshes."""
        return session.created_at + self._max_age

    def _record(
        self, refresh_token: str, session: Session, user: User, now: datetime, parent: RefreshRecord | None = None
    ) -> RefreshRecord:
        return RefreshRecord(
            token_hash=refresh_token_hash(refresh_token),
            family_id=session.family_id,
            user_id=user.id,
            token_version=parent.token_version if parent is not None else user.token_version,
            issued_at=now,
            expires_at=min(now + self._refresh_ttl, self._session_end(session)),
            parent_hash=parent.token_hash if parent is not None else None,
        )

    def _pair(self, user_id: str, token_version: int, refresh_token: str, session: Session) -> TokenPair:
        access_token, expires_in = self._tokens.issue(
            user_id, token_version, session.family_id, not_after=self._session_end(session).timestamp()
        )
        return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=expires_in)
