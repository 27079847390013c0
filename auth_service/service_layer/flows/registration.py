"""Registration: register, resend the code, confirm by code or by the mailed link.

A pending account's address is taken over by a newer registration; a code verifies the account only if it
was issued for its current registration. The verifying write is the ``verify_email`` applier of the
``code.verified`` table (machinery: code_verified.py), which auth's consumer runs too.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypedDict

from auth_service.domain.accounts import Status, User, next_sequence, normalize_email
from auth_service.domain.confirmations import ConfirmingCodes
from auth_service.domain.errors import (
    CodeExpired,
    EmailTaken,
    ServiceUnavailable,
)
from auth_service.domain.passwords import PasswordHasher
from auth_service.ports import Accounts, OutboxEntry, ResendRequest
from auth_service.service_layer.code_asks import CodeAsks
from auth_service.service_layer.code_verified import Outcome, Verified, VerifiedCodes
from auth_service.service_layer.codes import CodeClient, error_for
from auth_service.service_layer.events import AccountEvents
from auth_service.service_layer.links import InvalidLink
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.links import parse_link_token_reference
from common.locales import SOURCE_LOCALE, choose_locale
from common.messaging.messages import Purpose, UserRegistered, UserVerified, Verdict

log = logging.getLogger(__name__)

# Parallel registrations of one address each read the account and write it
# back only if nobody did in between; a loser reads again. Past this many
# rounds the caller is told to retry (503) rather than held.
MAX_WRITE_ROUNDS = 20


class Registration(TypedDict):
    """What a registration sets on its account, a new one or a pending one it takes over."""

    name: str | None
    password_hash: str
    status: Status
    created_at: datetime
    registered_seq: int
    code_seq: int
    expires_at: datetime | None
    locale: str


@dataclass(frozen=True)
class Confirmation:
    verified: bool
    user: User


class AccountRegistration:
    def __init__(
        self,
        users: Accounts,
        codes: CodeClient,
        uow: UnitOfWork,
        hasher: PasswordHasher,
        code_asks: CodeAsks,
        verified_codes: VerifiedCodes,
        confirming_codes: ConfirmingCodes,
        unverified_ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        default_locale: str = SOURCE_LOCALE,
        events: AccountEvents | None = None,
    ):
        self._users = users
        self._events = events if events is not None else AccountEvents(clock)
        self._codes = codes
        self._uow = uow
        self._hasher = hasher
        self._code_asks = code_asks
        code_asks.on(Purpose.VERIFY_EMAIL, self._issue_resent_code)
        self._verified_codes = verified_codes
        verified_codes.on(Purpose.VERIFY_EMAIL, self._apply)
        self._confirming_codes = confirming_codes
        self._unverified_ttl = timedelta(seconds=unverified_ttl_seconds)
        self._clock = clock
        self._default_locale = default_locale

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def register(
        self,
        email: str,
        password: str,
        name: str | None,
        request_id: str | None = None,
        preferred_locales: Sequence[str] = (),
    ) -> User:
        """Store a registration and queue its code. An address whose account is still pending
        is taken over: a new account id, the new password, name and language, a new code that voids
        the earlier ones. The language is the first of ``preferred_locales`` (the request's
        ``locale``, then its Accept-Language) that a shipped language serves, else DEFAULT_LOCALE."""
        email = normalize_email(email)
        locale = choose_locale(preferred_locales, self._default_locale)
        password_hash = self._hasher.hash(password)
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._now()
            current = self._users.by_email(email)
            if current is not None and current.verified:
                raise EmailTaken()
            if self._users.reserved_by(email, now) is not None:
                raise EmailTaken()  # an account left it within its undo window and may take it back
            if current is not None and current.expired(now):
                self._users.remove_expired(current.id, now)
                continue
            sequence = next_sequence(current.code_seq if current else 0, now)
            registration: Registration = {
                "name": name,
                "password_hash": password_hash,
                "status": Status.PENDING_VERIFICATION,
                "created_at": now,
                "registered_seq": sequence,
                "code_seq": sequence,
                "expires_at": now + self._unverified_ttl,
                "locale": locale,
            }
            if current is None:
                user = User(id=uuid.uuid4().hex, email=email, **registration)
                entries = self._registration_messages(user, request_id)
                try:
                    self._uow.commit(user.id, entries, self._users.add, user, entries)
                except EmailTaken:  # registered in parallel, maybe still pending: look again
                    continue
                break
            # A new id: the account id is in every link the account will be mailed, and whoever registered
            # the address first (and got the old id in their 201) must not hold it.
            user = dataclasses.replace(current, id=uuid.uuid4().hex, **registration)
            entries = self._registration_messages(user, request_id)
            if self._uow.commit_if(user.id, entries, self._users.replace_pending, current, user, entries):
                log.info("pending registration replaced by a new one", extra={"user_id": user.id})
                break
        else:
            raise ServiceUnavailable("This address is being registered right now. Try again shortly.")
        self._codes.start_cooldown(Purpose.VERIFY_EMAIL, email)
        return user

    def _registration_messages(self, user: User, request_id: str | None) -> list[OutboxEntry]:
        """What a stored registration sends: its code request, then the ``user.registered`` event."""
        return [self._code_request(user, request_id), self._events.entry(UserRegistered, user, name=user.name)]

    def resend_code(self, email: str, request_id: str | None = None, *, by_support: bool = False) -> None:
        """Ask for a fresh code. Answers alike, and after the same work, for every address: the relay
        looks the address up and queues a code if it has a pending account (see ``CodeAsks``).
        ``by_support``: asked by support, not held by the address's cooldown."""
        self._code_asks.ask(Purpose.VERIFY_EMAIL, email, request_id, by_support=by_support)

    def _issue_resent_code(self, request: ResendRequest) -> None:
        current: User | None = None
        for _ in range(MAX_WRITE_ROUNDS):
            now = self._now()
            current = self._users.by_email(request.email)
            if current is None or current.verified or current.expired(now):
                return
            user = dataclasses.replace(current, code_seq=next_sequence(current.code_seq, now))
            # The request's id, drawn from secrets, names the code request: acting on it twice
            # (a relay that died before recording it done) mails the same code, never a second one.
            entry = self._code_request(user, request.request_id, message_id=request.id)
            if self._uow.commit_if(user.id, [entry], self._users.replace_pending, current, user, [entry]):
                return
        log.warning("resend not acted on: the account kept changing", extra={"user_id": current and current.id})

    def confirm(self, email: str, code: str, request_id: str | None = None) -> Confirmation:
        """Submit a code and wait a bounded time for the worker's verdict.

        ``verified=False`` means no verdict came in time: the code stays queued
        and the account is still confirmed once the worker gets to it. An
        unknown address and a confirmed one answer as an expired code, except
        that the code which confirmed the address answers ``verified`` again.
        """
        user = self._live_user(normalize_email(email))
        if user is None:
            raise CodeExpired()
        if user.verified:
            return self._already_confirmed(user, code)
        tag = self._confirming_codes.tag(user.id, code)
        verdict = self._codes.judge(
            Purpose.VERIFY_EMAIL, user.email, code=code, user_id=user.id, request_id=request_id, confirmation=tag
        )
        if verdict is None:
            return Confirmation(False, user)
        if verdict.verified and verdict.user_id != user.id:
            # Issued for another account of this address (one a takeover replaced): not this one's code.
            return self._already_confirmed(self._users.by_id(user.id), code)
        if verdict.verified:
            if self.mark_verified(user, verdict.sequence or 0, tag):
                # What that update set, without reading the account again.
                verified = dataclasses.replace(user, status=Status.VERIFIED, expires_at=None, confirmed_code_tag=tag)
                return Confirmation(True, verified)
            # Verified already (auth's consumer got there first), or the code was issued for a
            # registration that a newer one has replaced since: that code is void.
            return self._already_confirmed(self._users.by_id(user.id), code)
        if verdict.verdict is Verdict.CODE_EXPIRED:
            # A redelivered submission may have verified the account already.
            return self._already_confirmed(self._users.by_id(user.id), code)
        raise error_for(verdict)

    def mark_verified(self, user: User, sequence: int, confirmation: str | None) -> bool:
        """Verify a pending account with the ``user.verified`` event in the same write; True if this call did."""
        if user.verified:
            # Read verified already (the consumer's copy of a verdict the request applied): the write
            # below would match nothing, so neither it nor its event is made.
            return False
        event = self._events.entry(UserVerified, user)
        return self._uow.commit_if(
            user.id, [event], self._users.mark_verified, user.id, self._now(), sequence, confirmation, [event]
        )

    def _apply(self, verified: Verified) -> bool:
        user = self._users.by_id(verified.user_id)
        return user is not None and self.mark_verified(user, verified.sequence or 0, verified.confirmation)

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
        return self._verified_codes.submit(user, user.email, None, link_token=link_token, request_id=request_id)

    def _link_owner(self, token: str | None) -> tuple[User, str] | None:
        reference = parse_link_token_reference(token)
        if reference is None:
            return None
        user_id, link_token = reference
        user = self._users.by_id(user_id)
        return None if user is None else (user, link_token)

    def _already_confirmed(self, user: User | None, code: str) -> Confirmation:
        codes = self._confirming_codes
        if user is not None and user.verified and codes.matches(user.confirmed_code_tag, user.id, code):
            return Confirmation(True, user)
        raise CodeExpired()

    def _live_user(self, email: str) -> User | None:
        """The account of an address; a pending one past its lifetime counts as none (the TTL
        monitor deletes it within a minute, mongomock never does)."""
        user = self._users.by_email(email)
        return None if user is None or user.expired(self._now()) else user

    def _code_request(self, user: User, request_id: str | None, message_id: str | None = None) -> OutboxEntry:
        return self._codes.request(
            Purpose.VERIFY_EMAIL,
            user.id,
            user.email,
            user.name,
            request_id,
            # The worker keeps only the newest request's code, and mails one address's codes in this order.
            sequence=user.code_seq,
            # The email says when the registration was made.
            registered_at=user.created_at.timestamp(),
            message_id=message_id,
            locale=user.locale,
        )
