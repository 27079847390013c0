"""The one place that wires the auth service: real adapters by default, fakes where tests pass them."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pymongo.errors
from flask import Flask
from prometheus_client import Counter, Gauge
from pymongo.database import Database

from auth_service.adapters import disposable_domains, mongo_schema
from auth_service.adapters.abuse_metrics import AbuseMetrics
from auth_service.adapters.account_keys import NoAccountKeys, RedisAccountKeys
from auth_service.adapters.admin_keys_file import AdminKeysFile, NoAdminKeys
from auth_service.adapters.cooldowns import InMemoryCooldowns, RedisCooldowns
from auth_service.adapters.keys_file import KeysFile
from auth_service.adapters.mongo_activity import MongoActivity
from auth_service.adapters.mongo_challenges import MongoSignInChallenges
from auth_service.adapters.mongo_resend_requests import MongoResendRequests
from auth_service.adapters.mongo_sessions import MongoSessionRepository
from auth_service.adapters.mongo_signing_keys import MongoSigningKeys
from auth_service.adapters.mongo_suppressions import MongoSuppressions
from auth_service.adapters.mongo_users import MongoUserRepository
from auth_service.adapters.mongo_webhooks import MongoWebhooks
from auth_service.adapters.rabbitmq import RabbitMessageBus
from auth_service.adapters.sns import SnsVerifier
from auth_service.adapters.webhook_addresses import AddressChecker
from auth_service.adapters.webhook_feed import BrokerEventFeed, InProcessEventFeed
from auth_service.adapters.webhook_metrics import FailingEndpoints, WebhookMetrics
from auth_service.adapters.webhook_poster import PosterOnFirstUse
from auth_service.adapters.webhook_timers import BrokerWebhookTimers
from auth_service.config import Settings
from auth_service.domain.abuse import CaptchaProvider
from auth_service.domain.admin_keys import AdminKey
from auth_service.domain.confirmations import ConfirmingCodes
from auth_service.domain.devices import device_label
from auth_service.domain.lockout import LockoutPolicy
from auth_service.domain.passwords import PasswordHasher
from auth_service.domain.sealed_keys import WEBHOOK_SECRETS_INFO, KeySealer
from auth_service.domain.signing_keys import HS256, KeySchedule
from auth_service.domain.tokens import LEEWAY_SECONDS, TokenIssuer
from auth_service.entrypoints.consumers import code_verified_router
from auth_service.entrypoints.http.admin.app import create_admin_app
from auth_service.entrypoints.http.app import create_app
from auth_service.entrypoints.session_ends_listener import SessionEndsListener
from auth_service.entrypoints.webhooks import Lanes, Sweep, dispatcher_handler
from auth_service.ports import Cooldowns, EventFeed, MessageBus, WebhookPoster
from auth_service.service_layer.activity import ActivityLog
from auth_service.service_layer.admin_access import AdminAccess, AdminKeys
from auth_service.service_layer.code_asks import CodeAsks
from auth_service.service_layer.code_verified import VerifiedCodes
from auth_service.service_layer.codes import CodeClient, CodeQueues, CodeTimings
from auth_service.service_layer.events import AccountEvents
from auth_service.service_layer.flows.account_admin import AccountAdmin, SupportTools
from auth_service.service_layer.flows.deletion import AccountDeletion, DeletionPolicy, DeletionStores
from auth_service.service_layer.flows.email_change import EmailChange
from auth_service.service_layer.flows.export import AccountExport
from auth_service.service_layer.flows.login_security import FailedLogins, KnownDevices, PasswordLogins
from auth_service.service_layer.flows.mail_suppressions import MailSuppressions
from auth_service.service_layer.flows.not_me import NotMeLinks
from auth_service.service_layer.flows.password_reset import PasswordReset
from auth_service.service_layer.flows.registration import AccountRegistration
from auth_service.service_layer.flows.sessions import SessionPolicy, SessionService
from auth_service.service_layer.flows.sign_in import SignIn, SignInPolicy
from auth_service.service_layer.flows.webhook_dispatch import DispatchPolicy, WebhookDispatch
from auth_service.service_layer.flows.webhook_endpoints import WebhookEndpoints
from auth_service.service_layer.keyring import (
    FileKeys,
    KeyRefresher,
    KeyRing,
    KeySource,
    RotatingKeys,
    SharedSecretKeys,
)
from auth_service.service_layer.outbox import Outbox
from auth_service.service_layer.outbox_relay import OutboxRelay
from auth_service.service_layer.session_ends import EndedSessions
from auth_service.service_layer.sign_up_abuse import AbuseChecks
from auth_service.service_layer.unit_of_work import UnitOfWork
from common.logs import bind_request_id
from common.messaging.consumer import Consumer, Outcome
from common.messaging.depths import QueueDepths
from common.metrics import CollectorRegistry, ConsumerMetrics, process_registry
from common.redis_client import redis_from_uri

log = logging.getLogger(__name__)

IN_PROCESS_MONGO = "mongomock://"


class Mode(enum.Enum):
    """How the system runs, said by whoever builds it."""

    # With RabbitMQ: the link thread, the outbox relay, auth's consumer and the session-end listener run in
    # the background; a stored ask wakes the relay, a confirm is marked off the link thread.
    BROKER = "broker"
    # On a bus handed in (unit tests, benchmarks): nothing runs in the background, so a stored ask is acted on
    # in the request, and a confirmed publish is marked at once.
    IN_PROCESS = "in_process"


@dataclass
class AuthSystem:
    app: Flask
    admin_app: Flask
    account_admin: AccountAdmin
    registration: AccountRegistration
    password_reset: PasswordReset
    email_change: EmailChange
    verified_codes: VerifiedCodes
    sessions: SessionService
    failed_logins: FailedLogins
    passwords: PasswordLogins
    not_me: NotMeLinks
    sign_in: SignIn
    keys: KeyRing
    users: MongoUserRepository
    bus: MessageBus
    codes: CodeClient
    code_asks: CodeAsks
    outbox: Outbox
    activity: ActivityLog
    deletion: AccountDeletion
    export: AccountExport
    mail_suppressions: MailSuppressions
    webhooks: WebhookEndpoints
    background: list = field(default_factory=list)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def start_background(self) -> None:
        start_all(self.background)

    def stop_background(self, timeout: float) -> None:
        stop_all(self.background, timeout)

    def failed(self) -> list[str]:
        return failed_of(self.background)


def start_all(threads: list) -> None:
    for thread in threads:
        thread.start()


def stop_all(threads: list, timeout: float) -> None:
    """Ask each to stop, last started first, then give them ``timeout`` in all to finish."""
    for thread in reversed(threads):
        thread.stop()
    deadline = time.monotonic() + timeout
    for thread in reversed(threads):
        thread.join(max(0.0, deadline - time.monotonic()))


def failed_of(threads: list) -> list[str]:
    return [thread.name for thread in threads if getattr(thread, "failure", None) is not None]


def mongo_database(settings: Settings) -> Database[dict[str, Any]]:
    if settings.mongo_uri.startswith(IN_PROCESS_MONGO):
        # Imported here: a service on a real MongoDB never loads the in-process store (about 2 MiB).
        import mongomock

        return mongomock.MongoClient()[settings.mongo_db]
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=3000,
        socketTimeoutMS=10000,
        # A replica set (MONGO_URI=mongodb://a,b,c/?replicaSet=rs0): a write is acknowledged once a
        # majority holds it, so a failover never takes back an account or its outbox; a write cut
        # off by the election is retried once on the new primary.
        retryWrites=True,
        w="majority",
        tz_aware=True,
    )
    return client[settings.mongo_db]


def cooldown_store(settings: Settings) -> Cooldowns:
    uri = settings.ratelimit_storage_uri
    if uri.startswith("memory://"):
        return InMemoryCooldowns()
    client = redis_from_uri(uri, **settings.ratelimit_store_options)
    return RedisCooldowns(client, settings.ratelimit_key_prefix)


def account_keys(settings: Settings) -> RedisAccountKeys | NoAccountKeys:
    uri = settings.ratelimit_storage_uri
    if uri.startswith("memory://"):
        return NoAccountKeys()
    return RedisAccountKeys(redis_from_uri(uri, **settings.ratelimit_store_options), settings.ratelimit_key_prefix)


def key_refresh_seconds(settings: Settings) -> float:
    """How often each process reloads the signing keys: well inside the JWKS cache time, so a key
    another replica published is served here long before it signs."""
    return max(0.5, min(30.0, settings.jwks_max_age_seconds / 4))


def key_source(settings: Settings, database, in_process_store: bool) -> KeySource:
    """HS256 under JWT_SECRET, the operator's keys file, or keys kept (and rotated) in MongoDB."""
    secret = settings.jwt_secret.get_secret_value()
    if settings.jwt_algorithm == HS256:
        return SharedSecretKeys(secret)
    if settings.jwt_signing_keys_file is not None:
        return FileKeys(KeysFile(settings.jwt_signing_keys_file))
    store = MongoSigningKeys(database, KeySealer(secret), serialize_writes=in_process_store)
    refresh = key_refresh_seconds(settings)
    schedule = KeySchedule(
        rotation=timedelta(days=settings.jwt_key_rotation_days),
        # A replica serves a new key at most one reload after it is stored: the lead covers that too.
        publish_lead=timedelta(seconds=settings.jwks_max_age_seconds + refresh),
        # A replica may sign with a retired key until its next reload; its tokens live JWT_TTL_SECONDS.
        token_life=timedelta(seconds=settings.jwt_ttl_seconds + LEEWAY_SECONDS + refresh),
    )
    return RotatingKeys(store, settings.jwt_algorithm, schedule)


def build(
    settings: Settings,
    *,
    mode: Mode = Mode.BROKER,
    database=None,
    bus: MessageBus | None = None,
    cooldowns: Cooldowns | None = None,
    clock: Callable[[], float] = time.time,
    resend_requested: Callable[[], object] | None = None,
    abuse_checks: AbuseChecks | None = None,
) -> AuthSystem:
    """``mode``: with the broker (``bus`` None: built here) or in one process on ``bus``. ``database``: the
    in-process store's database, when the caller keeps it (``MONGO_URI=mongomock://``). ``resend_requested``:
    what a resend or forgot wakes (by default the relay thread, or, in process, the ask acted on at once)."""
    if (mode is Mode.IN_PROCESS) != (bus is not None):
        raise ValueError("a bus is handed in exactly when the system runs in process")
    # The in-process store lives in this process: its writes take one lock (mongomock's own are not safe
    # between threads), and it gets its indexes here, as nobody else can migrate it.
    in_process_store = settings.mongo_uri.startswith(IN_PROCESS_MONGO)
    if database is None:
        database = mongo_database(settings)
    if in_process_store:
        mongo_schema.migrate(
            database,
            unverified_ttl_seconds=settings.unverified_ttl_seconds,
            now=datetime.fromtimestamp(clock(), UTC),
            in_process=True,
        )
    users = MongoUserRepository(database, serialize_writes=in_process_store)
    resend_requests = MongoResendRequests(database, serialize_writes=in_process_store)
    session_store = MongoSessionRepository(database, serialize_writes=in_process_store)
    challenges = MongoSignInChallenges(database, serialize_writes=in_process_store)
    activity_store = MongoActivity(database, settings.audit_retention_days, serialize_writes=in_process_store)
    activity = ActivityLog(activity_store, users, settings.audit_retention_days, clock)
    keys = KeyRing(key_source(settings, database, in_process_store), clock)
    ended_sessions = EndedSessions(settings.jwt_ttl_seconds + LEEWAY_SECONDS, clock)
    ended_sessions.load(session_store.ended_since(_moment(ended_sessions.since())))

    registry = process_registry()
    Gauge(
        "outbox_pending", "Users whose queue message waits in the outbox for the relay", registry=registry
    ).set_function(lambda: _or_nan(users.pending_outbox_count))
    Gauge(
        "outbox_overdue",
        "Users whose queue message is past its request's grace period and still unpublished (the broker refuses it)",
        registry=registry,
    ).set_function(lambda: _or_nan(lambda: users.overdue_outbox_count(datetime.fromtimestamp(clock(), UTC))))

    background: list = []
    feed: EventFeed
    if bus is None:
        rabbit = RabbitMessageBus(
            settings.rabbitmq_url, settings.topology, max_waiting_replies=settings.confirm_max_waiting
        )
        feed = BrokerEventFeed(rabbit, settings.topology, settings.publish_timeout_seconds)
        bus = rabbit
        background.append(bus)
    else:
        feed = InProcessEventFeed()
    relay_wakeup = threading.Event()
    outbox = Outbox(
        users,
        bus,
        settings.publish_timeout_seconds,
        clock,
        mark_later=_marker(mode),
        on_delivered=activity.keep_delivered,
    )
    uow = UnitOfWork(outbox)
    codes = CodeClient(
        bus,
        uow,
        cooldowns if cooldowns is not None else cooldown_store(settings),
        CodeQueues(requests=settings.account_creation_queue, submissions=settings.confirm_email_code_queue),
        CodeTimings(
            verdict_wait_seconds=settings.confirm_wait_seconds, cooldown_seconds=settings.resend_cooldown_seconds
        ),
        clock,
    )
    code_asks = CodeAsks(codes, resend_requests, clock)
    if resend_requested is None:
        # With the real broker the relay thread acts on stored requests; with a fake one, nothing
        # runs in the background, so the request acts on them itself.
        resend_requested = relay_wakeup.set if mode is Mode.BROKER else code_asks.process
    code_asks.wake_with(resend_requested)
    hasher = PasswordHasher(settings.bcrypt_rounds)
    events = AccountEvents(clock)
    failed_logins = FailedLogins(
        users,
        uow,
        events,
        LockoutPolicy(settings.failed_login_warning_threshold, settings.lockout_threshold, settings.lockout_seconds),
        timer_queue=settings.topology.auth.queues[0].delay_queue,
        clock=clock,
        activity=activity,
    )
    sessions = SessionService(
        users=users,
        sessions=session_store,
        tokens=TokenIssuer(
            keys.current,
            settings.jwt_ttl_seconds,
            settings.jwt_issuer,
            settings.jwt_audience,
            clock,
        ),
        hasher=hasher,
        policy=SessionPolicy(
            settings.refresh_ttl_seconds, settings.refresh_reuse_grace_seconds, settings.session_max_age_seconds
        ),
        uow=uow,
        clock=clock,
        ended=ended_sessions,
        events=events,
        activity=activity,
    )
    passwords = PasswordLogins(users, hasher, failed_logins, clock)
    verified_codes = VerifiedCodes(users, codes)
    registration = AccountRegistration(
        users=users,
        codes=codes,
        uow=uow,
        hasher=hasher,
        code_asks=code_asks,
        verified_codes=verified_codes,
        confirming_codes=ConfirmingCodes.from_secret(settings.jwt_secret.get_secret_value()),
        unverified_ttl_seconds=settings.unverified_ttl_seconds,
        clock=clock,
        events=events,
        default_locale=settings.default_locale,
    )
    password_reset = PasswordReset(
        users, codes, code_asks, verified_codes, uow, hasher, sessions, failed_logins, events, clock
    )
    email_change = EmailChange(
        users,
        codes,
        verified_codes,
        uow,
        hasher,
        sessions,
        events,
        clock,
        undo_window_seconds=settings.email_undo_window_seconds,
    )
    not_me = NotMeLinks(
        users,
        sessions,
        codes,
        uow,
        events,
        settings.not_me_ttl_seconds,
        clock,
        undo_window_seconds=settings.email_undo_window_seconds,
    )
    sign_in = SignIn(
        users,
        challenges,
        passwords,
        codes,
        code_asks,
        uow,
        hasher,
        sessions,
        SignInPolicy(trust_days=settings.mfa_trust_days, challenge_ttl_seconds=settings.code_ttl_seconds),
        KnownDevices(users, uow, events, clock),
        clock=clock,
        activity=activity,
    )
    # ua-parser compiles its rules on first use (about 0.1 s): here, not in the first login's answer.
    device_label(None)

    deletion = AccountDeletion(
        users,
        DeletionStores(
            sessions=session_store,
            challenges=challenges,
            asks=resend_requests,
            activity=activity,
            keys=account_keys(settings),
        ),
        sessions,
        verified_codes,
        codes,
        hasher,
        uow,
        DeletionPolicy(
            grace_seconds=settings.account_deletion_grace_seconds,
            timer_queue=settings.topology.auth.queues[0].long_delay_queue,
            worker_queue=settings.account_creation_queue,
        ),
        clock,
    )
    not_me.address_undone = deletion.cancel_proved_by
    export = AccountExport(users, session_store, challenges, resend_requests, activity, sessions, hasher, clock)

    background.append(KeyRefresher(keys, key_refresh_seconds(settings)))
    mail_suppressions = MailSuppressions(
        MongoSuppressions(database, serialize_writes=in_process_store),
        users,
        uow,
        events,
        bus,
        worker_queue=settings.account_creation_queue,
        publish_timeout_seconds=settings.publish_timeout_seconds,
        clock=clock,
    )
    webhook_store = webhook_store_of(settings, database, in_process_store)
    webhook_timers = BrokerWebhookTimers(
        bus, settings.topology.work_queue(settings.webhooks_queue), settings.publish_timeout_seconds
    )
    webhooks = WebhookEndpoints(
        webhook_store, webhook_timers, feed, AddressChecker(settings.webhook_allow_private_urls), clock
    )
    registry.register(FailingEndpoints(webhook_store.failing_since, clock))
    webhook_metrics = WebhookMetrics(registry)
    trusted = settings.sns_trusted_certificate_file
    sns_verifier = SnsVerifier(settings.ses_sns_topic_arns, trusted.read_bytes() if trusted else None)
    auth_queue = settings.topology.auth.queues[0]
    account_admin = AccountAdmin(
        users,
        SupportTools(
            sessions=sessions,
            verification=registration,
            reset=password_reset,
            erasure=deletion,
            mail=mail_suppressions,
        ),
        activity,
        uow,
        events,
        timer_queues=(auth_queue.delay_queue, auth_queue.long_delay_queue),
        short_timer_seconds=settings.lockout_seconds,
        clock=clock,
    )

    if mode is Mode.BROKER:
        consumed = ConsumerMetrics(
            registry,
            [settings.account_confirmed_queue, *([settings.webhooks_queue] if settings.webhook_dispatcher else [])],
        )

        def catch_up() -> None:
            ended_sessions.load(session_store.ended_since(_moment(ended_sessions.since())))

        background.append(
            SessionEndsListener(settings.rabbitmq_url, settings.account_events_exchange, ended_sessions, catch_up)
        )
        background.append(
            Consumer(
                url=settings.rabbitmq_url,
                queue=settings.account_confirmed_queue,
                handler=code_verified_router(
                    verified_codes, failed_logins, not_me, mail_suppressions, deletion, account_admin
                ),
                topology=settings.topology,
                observe=consumed.observe,
                bind_request_id=bind_request_id,
                unavailable=(pymongo.errors.ConnectionFailure,),
            )
        )
        if settings.webhook_dispatcher:
            background.extend(
                webhook_dispatcher(
                    settings, webhook_store, webhook_timers, feed, webhook_metrics, consumed.observe, clock
                )
            )
        relayed = Counter("outbox_relayed", "Queue messages published late by the outbox relay", registry=registry)
        registry.register(QueueDepths(settings.rabbitmq_url, settings.topology.auth.queues, "auth_service metrics"))
        background.append(OutboxRelay(outbox, on_relayed=relayed.inc, resends=code_asks.process, wakeup=relay_wakeup))

    def readiness() -> dict[str, str]:
        checks = {}
        try:
            users.ping()
            checks["mongodb"] = "up"
        except Exception:
            checks["mongodb"] = "down"
        checks["rabbitmq"] = "up" if bus.connected else "down"
        return checks

    if abuse_checks is None:
        abuse_checks = sign_up_abuse_checks(settings, AbuseMetrics(registry))
    app = create_app(
        settings,
        registration,
        password_reset,
        email_change,
        passwords,
        sessions,
        readiness,
        registry,
        sign_in=sign_in,
        not_me=not_me,
        activity=activity,
        deletion=deletion,
        export=export,
        abuse_checks=abuse_checks,
        keys=keys,
        mail_suppressions=mail_suppressions,
        sns_verifier=sns_verifier,
    )
    admin_app = create_admin_app(
        settings,
        AdminAccess(admin_keys(settings), on_used=_admin_key_use_gauge(registry, clock)),
        activity,
        registry,
        accounts=account_admin,
        sessions=sessions,
        webhooks=webhooks,
    )
    login_failures = app.extensions.get("auth_login_failures")
    if login_failures is not None:
        password_reset.forget_login_failures_with(login_failures.forget)
        account_admin.forget_login_failures_with(login_failures.forget)
    return AuthSystem(
        app=app,
        admin_app=admin_app,
        account_admin=account_admin,
        registration=registration,
        password_reset=password_reset,
        email_change=email_change,
        verified_codes=verified_codes,
        sessions=sessions,
        failed_logins=failed_logins,
        passwords=passwords,
        not_me=not_me,
        sign_in=sign_in,
        keys=keys,
        users=users,
        bus=bus,
        codes=codes,
        code_asks=code_asks,
        outbox=outbox,
        activity=activity,
        deletion=deletion,
        export=export,
        mail_suppressions=mail_suppressions,
        webhooks=webhooks,
        background=background,
        registry=registry,
    )


def webhook_store_of(settings: Settings, database, in_process_store: bool) -> MongoWebhooks:
    sealer = KeySealer(settings.jwt_secret.get_secret_value(), WEBHOOK_SECRETS_INFO)
    return MongoWebhooks(database, sealer, serialize_writes=in_process_store)


def webhook_dispatcher(
    settings: Settings,
    store: MongoWebhooks,
    timers: BrokerWebhookTimers,
    feed: EventFeed,
    metrics: WebhookMetrics,
    observe: Callable[[str, Outcome], None],
    clock: Callable[[], float] = time.time,
) -> list:
    """The dispatcher's threads: the consumer of its queue, the endpoints' lanes, the sweep."""

    def client() -> WebhookPoster:
        from auth_service.adapters.webhook_http import WebhookClient  # with urllib3, once an attempt comes

        return WebhookClient(
            settings.webhook_allow_private_urls, connections_per_host=settings.webhook_endpoint_concurrency
        )

    dispatch = WebhookDispatch(
        store,
        PosterOnFirstUse(client),
        timers,
        DispatchPolicy(
            timeout_seconds=settings.webhook_timeout_seconds,
            retry_schedule=settings.webhook_retry_schedule,
            disable_after=timedelta(days=settings.webhook_disable_after_days),
        ),
        metrics,
        clock,
    )
    lanes = Lanes(dispatch.attempt, settings.webhook_endpoint_concurrency)
    consumer = Consumer(
        url=settings.rabbitmq_url,
        queue=settings.webhooks_queue,
        handler=dispatcher_handler(dispatch, lanes),
        topology=settings.topology,
        prefetch=32,
        name="webhooks",
        observe=observe,
        bind_request_id=bind_request_id,
        unavailable=(pymongo.errors.ConnectionFailure,),
    )
    # Stopped in reverse: the consumer first (no new work), then the sweep, then the lanes finish what they hold.
    return [lanes, Sweep(dispatch, lanes, feed), consumer]


@dataclass
class WebhookDispatcherSystem:
    """``python -m auth_service webhooks``: the dispatcher alone, on auth's MongoDB and broker."""

    registry: CollectorRegistry
    background: list


def build_webhook_dispatcher(settings: Settings, database=None) -> WebhookDispatcherSystem:
    if database is None:
        database = mongo_database(settings)
    store = webhook_store_of(settings, database, in_process_store=False)
    registry = process_registry()
    bus = RabbitMessageBus(settings.rabbitmq_url, settings.topology, max_waiting_replies=1)
    timers = BrokerWebhookTimers(
        bus, settings.topology.work_queue(settings.webhooks_queue), settings.publish_timeout_seconds
    )
    registry.register(FailingEndpoints(store.failing_since))
    consumed = ConsumerMetrics(registry, [settings.webhooks_queue])
    feed = BrokerEventFeed(bus, settings.topology, settings.publish_timeout_seconds)
    threads = webhook_dispatcher(settings, store, timers, feed, WebhookMetrics(registry), consumed.observe)
    return WebhookDispatcherSystem(registry, [bus, *threads])


def admin_keys(settings: Settings) -> AdminKeys:
    """ADMIN_KEYS_FILE, read again whenever it changes; unset, no key exists (every admin request is 401)."""
    return AdminKeysFile(settings.admin_keys_file) if settings.admin_keys_file is not None else NoAdminKeys()


def _admin_key_use_gauge(registry: CollectorRegistry, clock: Callable[[], float]) -> Callable[[AdminKey], None]:
    """When each admin key was last used (``admin-keys list`` reads it): one series per key name."""
    last_used = Gauge(
        "admin_key_last_used_timestamp_seconds",
        "When each admin key last made a request (Unix time)",
        ["key"],
        registry=registry,
    )

    def used(key: AdminKey) -> None:
        last_used.labels(key=key.name).set(clock())

    return used


def sign_up_abuse_checks(settings: Settings, metrics: AbuseMetrics) -> AbuseChecks:
    """The checks the settings turn on, each with its HTTP client (no connection is opened until a check runs).

    A check's client, and urllib3 with it, is imported only when the check is on
    (docs/decisions/lazy-http-clients.md)."""
    captcha = None
    if settings.captcha_provider is not None and settings.captcha_secret is not None:
        from auth_service.adapters.captcha import SiteverifyCaptcha

        captcha = SiteverifyCaptcha(
            CaptchaProvider(settings.captcha_provider),
            settings.captcha_secret.get_secret_value(),
            settings.captcha_verify_url,
            settings.captcha_timeout_seconds,
            on_verified=metrics.captcha_verified,
        )
    ranges = None
    if settings.pwned_passwords_url:
        from auth_service.adapters.pwned_passwords import PwnedPasswordsClient

        ranges = PwnedPasswordsClient(
            settings.pwned_passwords_url,
            settings.pwned_passwords_timeout_seconds,
            settings.pwned_passwords_cache_ranges,
            on_lookup=metrics.range_lookup,
        )
    operator_lists = (
        settings.blocked_email_domains,
        settings.blocked_email_domains_file,
        settings.allowed_email_domains,
        settings.allowed_email_domains_file,
    )
    disposable = None
    if settings.block_disposable_addresses or any(operator_lists):
        disposable = disposable_domains.load(
            blocked=settings.blocked_email_domains,
            allowed=settings.allowed_email_domains,
            blocked_file=settings.blocked_email_domains_file,
            allowed_file=settings.allowed_email_domains_file,
            maintained=None if settings.block_disposable_addresses else frozenset(),
        )
    return AbuseChecks(
        metrics,
        captcha=captcha,
        password_ranges=ranges,
        breach_check_fails_closed=settings.pwned_passwords_fail_closed,
        disposable=disposable,
    )


def _marker(mode: Mode) -> Callable[[Callable[[], object]], object]:
    """Where ``Outbox.deliver_soon`` marks an entry delivered: with the real broker, on a thread of its
    own (the confirm comes on the link thread, which must not wait on MongoDB); in process, at once."""
    if mode is Mode.IN_PROCESS:
        return lambda mark: mark()
    marks = ThreadPoolExecutor(1, thread_name_prefix="outbox-marks")

    def mark_later(mark: Callable[[], object]) -> None:
        try:
            marks.submit(mark)
        except RuntimeError:  # shutting down: the relay publishes the entry again, once it is due
            log.info("outbox entry left for the relay at shutdown")

    return mark_later


def _moment(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _or_nan(count: Callable[[], int]) -> float:
    # A scrape must not fail because MongoDB is away; /readyz says that already.
    try:
        return float(count())
    except Exception:
        return float("nan")
