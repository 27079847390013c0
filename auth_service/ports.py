"""The auth service's small interfaces to the outside world."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from auth_service.domain.abuse import PasswordRange, Refusal
from auth_service.domain.accounts import (
    Disablement,
    LeftAddress,
    NotMeLink,
    PendingChange,
    TrustedDevice,
    User,
    UserSearch,
)
from auth_service.domain.activity import Client
from auth_service.domain.challenges import SignInChallenge
from auth_service.domain.recovery import Press
from auth_service.domain.sessions import RefreshRecord, Session
from auth_service.domain.signing_keys import KeyRecord
from auth_service.domain.webhooks import (
    Attempt,
    AttemptOutcome,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    Endpoint,
    Subscription,
)
from common.messaging.envelope import Outgoing
from common.messaging.messages import Purpose


class BrokerUnavailable(Exception):
    """The broker is not reachable or did not confirm in time."""


@dataclass(frozen=True)
class OutboxEntry:
    """A message stored with its user document until the broker confirmed it."""

    queue: str
    message: Outgoing
    # The request that caused it (an account event's activity shows its address and device).
    client: Client | None = None


@dataclass(frozen=True)
class ResendRequest:
    """A code asked for by address (resend, forgot) and answered (202), stored for the background
    to act on whatever the address."""

    id: str  # drawn from ``secrets``: it becomes the code request's message id, which the code derives from
    email: str
    requested_at: datetime
    request_id: str | None = None
    purpose: Purpose = Purpose.VERIFY_EMAIL


# The account document (MongoDB's "users" collection) seen by concern: each flow names the ports it uses,
# one named write per use case, and the wiring hands it the one adapter that serves them all.


class Accounts(Protocol):
    """Who an account is: its address, its registration, its confirmation."""

    def add(self, user: User, outbox: list[OutboxEntry], publish_after: datetime) -> None:
        """Insert a new account; ``EmailTaken`` if the address has one already."""
        ...

    def by_email(self, email: str) -> User | None: ...
    def by_id(self, user_id: str) -> User | None: ...

    def replace_pending(self, current: User, updated: User, outbox: list[OutboxEntry], publish_after: datetime) -> bool:
        """Write ``updated`` over a pending account and queue a message, only if it is still as in
        ``current`` (same ``code_seq``); False if a concurrent change came first."""
        ...

    def remove_expired(self, user_id: str, now: datetime) -> bool: ...

    def mark_verified(
        self,
        user_id: str,
        at: datetime,
        code_seq: int,
        confirmed_code_tag: str | None,
        outbox: list[OutboxEntry],
        publish_after: datetime,
    ) -> bool:
        """Verify a pending account, unless its registration is newer than the code that proved the
        address (``registered_seq > code_seq``); True if this call verified it (and stored ``outbox``)."""
        ...

    def record_first_verification(
        self, user_id: str, at: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool: ...

    def reserved_by(self, email: str, now: datetime) -> str | None: ...
    def evict_pending(self, email: str, user_id: str) -> int: ...
    def set_mfa(self, user_id: str, enabled: bool, notice: OutboxEntry, publish_after: datetime) -> bool: ...
    def ping(self) -> None: ...


class Credentials(Protocol):
    """The password, the tokens it let out (the token version), and the failed logins that guard it."""

    def replace_password_hash(self, user_id: str, password_hash: str) -> None:
        """The same password, hashed at today's cost (a rehash): no token is refused."""
        ...

    def change_password(
        self,
        user_id: str,
        at: datetime,
        password_hash: str,
        expected_version: int | None,
        outbox: list[OutboxEntry],
        publish_after: datetime,
    ) -> User | None:
        """The new hash, every earlier token refused and every trusted device forgotten, in one update with
        ``outbox``; only at ``expected_version`` if given. None if no account (at that version) matched."""
        ...

    def apply_reset(
        self, user_id: str, at: datetime, reset: PendingChange, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        """The hash a reset stored, only while it is stored (spent in the same update: once, whoever comes
        first): every earlier token refused, trusted devices forgotten, the address proved, the lock and
        streak ended, the password usable again. None if the reset is no longer stored."""
        ...

    def revoke_tokens(
        self, user_id: str, at: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        """Every earlier token refused, the password kept. None if there is no such account."""
        ...

    def count_login_failure(
        self,
        user_id: str,
        before: int,
        after: int,
        now: datetime,
        lock: tuple[datetime, str] | None,
        outbox: list[OutboxEntry],
        publish_after: datetime,
    ) -> bool: ...
    def clear_login_failures(self, user_id: str) -> None: ...
    def end_lock(
        self, user_id: str, lock_id: str, now: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool: ...


class PendingChanges(Protocol):
    """What a code will apply once verified (a reset's hash, a new address), stored under its submission."""

    def add_pending_change(self, user_id: str, change: PendingChange) -> None: ...
    def pending_change(self, user_id: str, submission_id: str) -> PendingChange | None: ...
    def discard_pending_change(self, user_id: str, submission_id: str) -> None: ...
    def request_email_change(
        self, user_id: str, new_email: str, outbox: list[OutboxEntry], publish_after: datetime
    ) -> None: ...
    def apply_email_change(
        self,
        user_id: str,
        change: PendingChange,
        at: datetime,
        outbox: list[OutboxEntry],
        publish_after: datetime,
        left: LeftAddress | None = None,
    ) -> User | None: ...


class Devices(Protocol):
    """The devices an account signed in from, and those the second factor trusts."""

    def remember_device(
        self, user_id: str, key: str, now: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool: ...
    def trust_device(self, user_id: str, trusted: TrustedDevice) -> None: ...
    def forget_devices(self, user_id: str) -> None: ...


class RecoveryLinks(Protocol):
    """The "this wasn't me" links an account's notices carried, and what a press writes."""

    def add_not_me(self, user_id: str, link: NotMeLink, now: datetime) -> None: ...
    def not_me(self, user_id: str, digest: str, now: datetime) -> NotMeLink | None: ...
    def not_me_links(self, user_id: str) -> tuple[User, tuple[NotMeLink, ...], int] | None: ...
    def secure(self, user_id: str, press: Press, outbox: list[OutboxEntry], publish_after: datetime) -> User | None:
        """The account secured in place: the password unusable until a reset. None if another press came first."""
        ...

    def restore_address(
        self, user_id: str, press: Press, email: str, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None:
        """Secured, and ``email`` the login again; ``EmailTaken`` if a confirmed account holds it."""
        ...

    def freeze(self, user_id: str, press: Press, outbox: list[OutboxEntry], publish_after: datetime) -> User | None:
        """Secured and frozen for support (a contested undo, or an address that could not be restored)."""
        ...


class SupportAccounts(Protocol):
    """What support does to accounts through the admin API."""

    def search(self, query: UserSearch) -> list[User]:
        """A page of accounts in address order (an index range, never a skip)."""
        ...

    def disable(
        self, user_id: str, disablement: Disablement, outbox: list[OutboxEntry], publish_after: datetime
    ) -> User | None: ...
    def enable(
        self, user_id: str, disable_id: str | None, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool: ...
    def unlock(self, user_id: str, outbox: list[OutboxEntry], publish_after: datetime) -> bool: ...


class OutboxStore(Protocol):
    """The messages each account document holds until the broker confirmed them."""

    def add_outbox(self, user_id: str, outbox: OutboxEntry, publish_after: datetime) -> None: ...
    def outbox_entries(self, user_id: str) -> list[OutboxEntry]: ...
    def outbox_delivered(self, user_id: str, message_id: str, others_pending: bool = False) -> None:
        """Take the entry out. ``others_pending``: the caller knows later entries are still there (the rest of
        one write, of a relay's claimed batch, of an erasure's outbox), which it delivers after this one, so
        the relay keeps watching the account."""
        ...

    def claim_due_outbox(self, now: datetime, lease_until: datetime) -> tuple[str, list[OutboxEntry]] | None: ...
    def postpone_outbox(self, user_id: str, until: datetime) -> None: ...


class ResendRequests(Protocol):
    def add(self, request: ResendRequest) -> None: ...
    def claim(self, now: datetime, lease_until: datetime) -> ResendRequest | None:
        """One request due by ``now``, hidden from other claimers until ``lease_until``."""
        ...

    def done(self, request_id: str) -> None: ...


class SuppressionStore(Protocol):
    """The suppressed addresses auth keeps (flows/mail_suppressions.py)."""

    def add(self, email: str, reason: str, source: str, now: datetime) -> bool: ...
    def remove(self, email: str) -> bool: ...
    def contains(self, email: str) -> bool: ...


class MessageBus(Protocol):
    def publish(self, queue: str, message: Outgoing, timeout: float) -> None: ...
    def publish_soon(self, queue: str, message: Outgoing) -> Future[None]:
        """Publish without waiting: the future is done once the broker confirmed the message, or failed.
        A process's publishes, waited for or not, go out in the order they were made."""
        ...

    def request(self, queue: str, message: Outgoing, timeout: float) -> dict | None: ...
    @property
    def connected(self) -> bool: ...


class Cooldowns(Protocol):
    def start(self, key: str, seconds: int) -> float:
        """Start a cooldown; returns 0 if it started, else the seconds left of the running one."""
        ...


class CheckUnavailable(Exception):
    """An outside check (breached passwords, CAPTCHA) did not answer in time, or answered nonsense."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # a metric label: "timeout", "error"


class PasswordRanges(Protocol):
    def breached(self, prefix: str) -> PasswordRange:
        """The breached suffixes of a SHA-1 prefix (five hex digits); ``CheckUnavailable`` if the API is not there."""
        ...


class CaptchaVerifier(Protocol):
    def verify(self, token: str, remote_ip: str | None) -> bool:
        """The provider's verdict on a token; ``CheckUnavailable`` if it gave none."""
        ...


class AbuseObserver(Protocol):
    def refused(self, reason: Refusal) -> None: ...
    def unchecked(self, check: str, reason: str) -> None:
        """A check was skipped (failing open): ``check`` names it, ``reason`` says why."""
        ...


class SessionRepository(Protocol):
    def start(self, session: Session, first: RefreshRecord) -> None: ...
    def add(self, record: RefreshRecord, ip: str | None = None) -> None: ...
    def claim(self, token_hash: str, now: datetime) -> RefreshRecord | None:
        """Mark the token used if it is unused and unexpired; atomic across processes."""
        ...

    def find(self, token_hash: str) -> RefreshRecord | None: ...
    def session(self, family_id: str) -> Session | None: ...
    def end(self, family_id: str, at: datetime, reason: str) -> bool: ...
    def end_all(self, user_id: str, below_version: int, at: datetime, reason: str) -> int: ...
    def live_of(self, user_id: str, token_version: int, now: datetime) -> list[Session]: ...
    def end_others(self, user_id: str, keep: str | None, at: datetime, reason: str) -> list[str]: ...
    def ended_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(session id, ended at) of every session ended at or after ``since``."""
        ...


class SignInChallenges(Protocol):
    def add(self, challenge: SignInChallenge) -> None: ...
    def find(self, challenge_hash: str) -> SignInChallenge | None: ...
    def spend(self, challenge_hash: str) -> bool:
        """Remove the challenge; True for the one caller that did (atomic across processes)."""
        ...


class SigningKeyStore(Protocol):
    def records(self) -> list[KeyRecord]: ...
    def add(self, record: KeyRecord) -> bool:
        """Store a key; False if another process stored one of that generation first (atomic)."""
        ...

    def remove(self, kid: str) -> bool: ...


class WebhookStore(Protocol):
    """Webhook endpoints and deliveries (auth_service/adapters/mongo_webhooks.py)."""

    def add_endpoint(self, endpoint: Endpoint) -> None: ...
    def endpoints(self) -> list[Endpoint]: ...
    def subscriptions(self) -> list[Subscription]: ...
    def endpoint(self, endpoint_id: str) -> Endpoint | None: ...
    def remove_endpoint(self, endpoint_id: str) -> bool: ...
    def replace_secrets(self, endpoint: Endpoint) -> bool: ...
    def record_success(self, endpoint_id: str) -> None: ...
    def record_failure(self, endpoint_id: str, now: datetime) -> datetime | None: ...
    def disable(self, endpoint_id: str, now: datetime) -> bool: ...
    def enable(self, endpoint_id: str) -> bool: ...
    def add_delivery(self, delivery: Delivery) -> bool: ...
    def delivery(self, delivery_id: str) -> Delivery | None: ...
    def claim(self, delivery_id: str, now: datetime, lease: timedelta) -> Delivery | None: ...
    def finish_attempt(
        self, delivery_id: str, attempt: Attempt, status: DeliveryStatus, next_attempt_at: datetime | None
    ) -> None: ...
    def close(self, delivery_id: str, status: DeliveryStatus) -> None: ...
    def make_due(self, delivery_id: str, failed_attempts: int) -> bool: ...
    def retry_by_hand(self, delivery_id: str, endpoint_id: str, now: datetime) -> bool: ...
    def deliveries(self, endpoint_id: str, status: DeliveryStatus | None, limit: int) -> list[Delivery]: ...
    def stranded(self, now: datetime, overdue_before: datetime, limit: int) -> list[tuple[str, str]]: ...


class WebhookPoster(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float) -> AttemptResult: ...


class WebhookTimers(Protocol):
    """Where an attempt is scheduled: ``due`` hands it to the dispatchers after ``delay_seconds`` (0: now)."""

    def due(self, delivery_id: str, endpoint_id: str, failed_attempts: int | None, delay_seconds: int) -> None: ...


class EventFeed(Protocol):
    """The dispatchers' subscription to account events. Until an endpoint exists nobody reads them, so
    they are not routed to the webhooks queue at all; ``open`` starts that, for good (idempotent).
    ``BrokerUnavailable`` if the broker does not answer."""

    def open(self) -> None: ...


class WebhookObserver(Protocol):
    def attempted(self, outcome: AttemptOutcome, delivery_status: DeliveryStatus, seconds: float) -> None: ...
    def endpoint_disabled(self) -> None: ...


class AddressCheck(Protocol):
    """Resolves a webhook URL's host and checks its addresses; ``RefusedAddress`` if the guard refuses one."""

    def __call__(self, host: str, port: int) -> None: ...
