"""The auth service's use cases. The HTTP layer and the consumers call these; they talk
to MongoDB, the broker and the cooldown store only through the ports."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from auth_service.codes import CodeClient, error_for
from auth_service.domain.accounts import Status, User, normalize_email
from auth_service.domain.errors import (
    CodeExpired,
    EmailNotVerified,
    InvalidCredentials,
)
from auth_service.domain.passwords import PasswordHasher
from auth_service.domain.sessions import TokenPair
from auth_service.outbox import Outbox
from auth_service.ports import UserRepository
from auth_service.sessions import SessionService
from common.messaging.messages import Purpose, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Confirmation:
    verified: bool
    user: User


class AccountService:
    def __init__(
        self,
        users: UserRepository,
        codes: CodeClient,
        outbox: Outbox,
        hasher: PasswordHasher,
        sessions: SessionService,
        clock: Callable[[], float] = time.time,
    ):
        self._users = users
        self._codes = codes
        self._outbox = outbox
        self._hasher = hasher
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def register(self, email: str, password: str, name: str | None, request_id: str | None = None) -> User:
        email = normalize_email(email)
        user = User(
            id=uuid.uuid4().hex,
            email=email,
            name=name,
            password_hash=self._hasher.hash(password),
            status=Status.PENDING_VERIFICATION,
            created_at=self._now(),
        )
        entry = self._codes.request(Purpose.VERIFY_EMAIL, user.id, user.email, user.name, request_id)
        self._users.add(user, entry, publish_after=self._outbox.relay_after())
        self._codes.start_cooldown(Purpose.VERIFY_EMAIL, email)
        self._outbox.deliver(user.id, entry)
        return user

    def resend_code(self, email: str, request_id: str | None = None) -> None:
        """Queue a fresh code. Answers alike for every address, known or not."""
        email = normalize_email(email)
        self._codes.throttle(Purpose.VERIFY_EMAIL, email)
        user = self._users.by_email(email)
        if user is None or user.verified:
            return
        self._codes.issue(Purpose.VERIFY_EMAIL, user.id, user.email, user.name, request_id)

    def confirm(self, email: str, code: str, request_id: str | None = None) -> Confirmation:
        """Submit a code and wait a bounded time for the worker's verdict.

        ``verified=False`` means no verdict came in time: the code stays queued
        and the account is still confirmed once the worker gets to it.
        """
        user = self._users.by_email(normalize_email(email))
        if user is None:
            raise CodeExpired()
        if user.verified:
            return Confirmation(True, user)
        verdict = self._codes.judge(Purpose.VERIFY_EMAIL, user.email, code=code, user_id=user.id, request_id=request_id)
        if verdict is None:
            return Confirmation(False, user)
        if verdict.verified:
            self._users.mark_verified(user.id, self._now())
            return Confirmation(True, self._users.by_id(user.id) or user)
        if verdict.verdict is Verdict.CODE_EXPIRED:
            # A redelivered submission may have verified the account already.
            current = self._users.by_id(user.id)
            if current is not None and current.verified:
                return Confirmation(True, current)
        raise error_for(verdict)

    def mark_verified(self, user_id: str) -> bool:
        return self._users.mark_verified(user_id, self._now())

    def login(self, email: str, password: str) -> TokenPair:
        user = self._users.by_email(normalize_email(email))
        if user is None:
            self._hasher.burn_time(password)
            raise InvalidCredentials()
        if not self._hasher.verify(password, user.password_hash):
            raise InvalidCredentials()
        if not user.verified:
            raise EmailNotVerified()
        if self._hasher.needs_rehash(user.password_hash):
            self._users.replace_password_hash(user.id, self._hasher.hash(password))
        return self._sessions.open(user)
