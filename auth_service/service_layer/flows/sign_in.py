"""Sign-in by emailed code: the second factor after a password, and sign-in without a password.

A sign-in code is one more purpose of the code machinery (``Purpose.SIGN_IN``):
the worker stores, counts, mails and judges it like every code, and
``CodeClient`` asks for and submits it. What is particular to sign-in is here:
the account's switch, the challenge a password login answers while the switch
is on, the devices that passed the factor recently, and that a verified code
opens a session for the request that submitted it. Nothing is applied later
from the worker's durable ``code.verified``: a sign-in whose answer was lost is
simply done again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from auth_service.domain import activity as recorded
from auth_service.domain.accounts import TrustedDevice, normalize_email
from auth_service.domain.challenges import SignInChallenge, challenge_hash, new_challenge
from auth_service.domain.devices import Device
from auth_service.domain.errors import CodeExpired, InvalidCredentials, ServiceUnavailable
from auth_service.domain.passwords import PasswordHasher
from auth_service.domain.recovery import refuse_while_recovering
from auth_service.domain.sessions import TokenPair
from auth_service.ports import Accounts, Devices, ResendRequest, SignInChallenges
from auth_service.service_layer.activity import ActivityLog
from auth_service.service_layer.capabilities import DeviceSightings, PasswordCheck, SessionOpener
from auth_service.service_layer.code_asks import CodeAsks
from auth_service.service_layer.codes import CodeClient, error_for
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.messaging.messages import CodeVerdict, Purpose
from common.notices import Notice

log = logging.getLogger(__name__)

NO_VERDICT = "The code could not be checked in time. Ask for a new code and try again."


class SignInStore(Accounts, Devices, Protocol):
    """The account-document ports this uses."""


@dataclass(frozen=True)
class MfaChallenge:
    """A right password on a device the second factor does not trust: the code is on its way."""

    challenge: str


@dataclass(frozen=True)
class SignInPolicy:
    trust_days: int
    # A challenge lives as long as its code.
    challenge_ttl_seconds: int


class SignIn:
    def __init__(
        self,
        users: SignInStore,
        challenges: SignInChallenges,
        passwords: PasswordCheck,
        codes: CodeClient,
        code_asks: CodeAsks,
        uow: UnitOfWork,
        hasher: PasswordHasher,
        sessions: SessionOpener,
        policy: SignInPolicy,
        devices: DeviceSightings,
        clock: Callable[[], float] = time.time,
        activity: ActivityLog | None = None,
    ):
        self._activity = activity
        self._users = users
        self._devices = devices
        self._challenges = challenges
        self._passwords = passwords
        self._codes = codes
        code_asks.on(Purpose.SIGN_IN, self._issue_asked_code)
        self._code_asks = code_asks
        self._uow = uow
        self._hasher = hasher
        self._sessions = sessions
        self._trust = timedelta(days=policy.trust_days)
        self._challenge_ttl = timedelta(seconds=policy.challenge_ttl_seconds)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- the second factor ---

    def set_mfa(self, access_token: str | None, enabled: bool, password: str, request_id: str | None = None) -> bool:
        """Turn the emailed second factor on or off; a change mails the owner a notice. Returns the new state."""
        user = self._sessions.authenticate(access_token)
        if not enabled:
            refuse_while_recovering(user)
        if not self._hasher.verify(password, user.password_hash):
            raise InvalidCredentials("The password is incorrect.")
        notice = self._codes.notice(
            Notice.MFA_ENABLED if enabled else Notice.MFA_DISABLED,
            user.email,
            {},
            request_id,
            locale=user.locale,
            user_id=user.id,
        )
        if self._uow.commit_if(user.id, [notice], self._users.set_mfa, user.id, enabled, notice):
            log.info("second factor switched", extra={"user_id": user.id, "mfa": "email" if enabled else "off"})
            if self._activity is not None:
                self._activity.record(user.id, recorded.MFA_ENABLED if enabled else recorded.MFA_DISABLED)
        return enabled

    def login(
        self, email: str, password: str, device: Device, request_id: str | None = None
    ) -> TokenPair | MfaChallenge:
        """A password login from ``device``. With the second factor on and the device not trusted, the
        answer is a challenge and a sign-in code goes to the address."""
        user = self._passwords.verify_password(email, password, device)
        now = self._now()
        trusted_as = device.key
        if not user.mfa_enabled or user.trusts(trusted_as, now):
            self._devices.signed_in(user, device)
            return self._sessions.open(user, device)
        self._codes.throttle(Purpose.SIGN_IN, user.email)
        challenge = new_challenge()
        # Numbers the code request: only the code mailed for this attempt completes this challenge.
        sequence = int(self._clock() * 1_000_000)
        self._challenges.add(
            SignInChallenge(
                challenge_hash(challenge), user.id, user.email, trusted_as, sequence, now + self._challenge_ttl
            )
        )
        entry = self._codes.request(
            Purpose.SIGN_IN, user.id, user.email, request_id=request_id, sequence=sequence, locale=user.locale
        )
        self._codes.issue(user.id, entry)
        return MfaChallenge(challenge)

    def verify_challenge(self, challenge: str, code: str, device: Device, request_id: str | None = None) -> TokenPair:
        """Challenge and code -> the token pair, once; the device is trusted from then on.

        A challenge that is unknown, used, expired, or presented from another device than
        its login's answers as an expired code, and its code is not submitted."""
        now = self._now()
        found = self._challenges.find(challenge_hash(challenge))
        if found is None or found.expires_at <= now or found.device != device.key:
            raise CodeExpired()
        owner = self._users.by_id(found.user_id)
        proven = owner is not None and owner.knows(device.key)
        verdict = self._judge(found.email, code, found.user_id, request_id, proven)
        if verdict.user_id != found.user_id or verdict.sequence != found.sequence:
            raise CodeExpired()  # a code of another attempt: this attempt's code was replaced
        if not self._challenges.spend(found.challenge_hash):
            raise CodeExpired()  # a parallel verify of this challenge won
        user = self._users.by_id(found.user_id)
        if user is None or user.email != found.email or user.must_reset or user.frozen:
            # The login moved since this challenge (its code went elsewhere), or a "this wasn't me" press
            # came after it: a challenge a thief started before the press must not open a session.
            raise CodeExpired()
        self._users.trust_device(user.id, TrustedDevice(found.device, now + self._trust))
        self._devices.signed_in(user, device)
        return self._sessions.open(user, device)

    def challenge_owner(self, challenge: str) -> str | None:
        """The account a challenge was issued to, if it is still stored (rate limits)."""
        found = self._challenges.find(challenge_hash(challenge))
        return found.user_id if found is not None else None

    # --- without a password ---

    def ask_code(self, email: str, request_id: str | None = None) -> None:
        """Mail a sign-in code to a confirmed account. Answers alike, after the same work, for every
        address: the relay looks the address up (see ``CodeAsks``)."""
        self._code_asks.ask(Purpose.SIGN_IN, email, request_id)

    def _issue_asked_code(self, request: ResendRequest) -> None:
        user = self._users.by_email(request.email)
        # With the second factor on, the mailbox alone must not open the account: no code is mailed,
        # and the request was answered 202 like every other before anything was looked up. Nor while the
        # account waits for its erasure.
        if user is None or not user.verified or user.mfa_enabled or user.pending_deletion or user.frozen:
            return
        self._codes.issue_asked(Purpose.SIGN_IN, user, request)

    def verify_code(self, email: str, code: str, device: Device, request_id: str | None = None) -> TokenPair:
        """Address and sign-in code -> the token pair, and the device is remembered (a new one is
        announced, with the notice's "this wasn't me" link). Every address is submitted to the worker,
        so that an unknown one costs the same round trip and answers like a known one.

        An account with the second factor on is never opened here: the only sign-in codes it is mailed
        are its challenges', and those work with their challenge only (``verify_challenge``)."""
        email = normalize_email(email)
        holder = self._users.by_email(email)  # read for every address: the same work whether it has an account
        proven = holder is not None and holder.knows(device.key)
        verdict = self._judge(email, code, None, request_id, proven)
        user = self._users.by_id(verdict.user_id or "")
        if user is None or not user.verified or user.email != email or user.mfa_enabled or user.frozen:
            raise CodeExpired()
        self._devices.signed_in(user, device)
        return self._sessions.open(user, device)

    def _judge(
        self, email: str, code: str, user_id: str | None, request_id: str | None, proven_device: bool = False
    ) -> CodeVerdict:
        verdict = self._codes.judge(
            Purpose.SIGN_IN, email, code=code, user_id=user_id, request_id=request_id, proven_device=proven_device
        )
        if verdict is None:
            # The worker still judges it, and a verified code is spent: nothing can open the session later.
            raise ServiceUnavailable(NO_VERDICT)
        if not verdict.verified:
            raise error_for(verdict)
        return verdict
