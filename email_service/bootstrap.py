"""The one place that wires the worker: real adapters by default, fakes where tests pass them."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from common.logs import bind_request_id as bind_request_id_to_logs
from common.messaging.consumer import Consumer, Observer
from common.messaging.depths import QueueDepths
from common.metrics import CollectorRegistry, ConsumerMetrics, process_registry
from common.redis_client import redis_from_uri
from email_service.adapters.code_key import ConfiguredCodeKey, SharedCodeKey
from email_service.adapters.mailer import SmtpConnections, SmtpMailer, SmtpProbe, Templates
from email_service.adapters.metrics import PrometheusTransportEvents, PrometheusVerificationEvents
from email_service.adapters.pending_store import RedisPendingCodes
from email_service.adapters.postmark import PostmarkTransport
from email_service.adapters.ses import SesTransport
from email_service.adapters.suppressions import RedisSuppressions
from email_service.config import Settings
from email_service.delivery import FailoverTransport, TransportEvents
from email_service.handlers import CodeHandlers, CodePolicy
from email_service.ports import Mailer, MailTransport, PendingStore, Suppressions, VerificationEvents

if TYPE_CHECKING:
    from email_service.adapters.dkim_signer import DkimSigner

SMTP_PROBE_TIMEOUT_SECONDS = 2.0
SMTP_PROBE_CACHE_SECONDS = 5.0
# A mail is a handful of SMTP exchanges (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT),
# each bounded by SMTP_TIMEOUT_SECONDS: the mailing lock outlasts all of them.
SMTP_EXCHANGES_PER_MAIL = 10


@dataclass
class Worker:
    consumers: list[Consumer]
    registry: CollectorRegistry
    readiness: Callable[[], dict[str, str]]
    # Once the consumers are done: says QUIT on the kept SMTP connections.
    close: Callable[[], None]


def build_worker(settings: Settings) -> Worker:
    """The production wiring: Redis, SMTP, consumers, and the metrics and readiness they report to."""
    registry = process_registry()
    client = redis_client(settings)
    transport_events = PrometheusTransportEvents(registry, settings.mail_transports)
    transport = build_transport(settings, transport_events)
    transport_events.watch(transport.open_transports, transport.names)
    mailer = build_mailer(settings, transport)
    handlers = build_handlers(
        settings,
        client=client,
        mailer=mailer,
        events=PrometheusVerificationEvents(registry),
        suppressions=RedisSuppressions(client, settings.redis_key_prefix),
    )
    consumers = build_consumers(
        settings, handlers, observe=ConsumerMetrics(registry, consumed_queues(settings)).observe
    )
    registry.register(QueueDepths(settings.rabbitmq_url, settings.topology.worker.queues, "email_service metrics"))
    smtp_answers = SmtpProbe(
        settings.smtp_host,
        settings.smtp_port,
        use_ssl=settings.smtp_use_ssl,
        timeout=min(SMTP_PROBE_TIMEOUT_SECONDS, settings.smtp_timeout_seconds),
        cache_seconds=SMTP_PROBE_CACHE_SECONDS,
    )

    def readiness() -> dict[str, str]:
        try:
            redis_up = bool(client.ping())
        except redis.RedisError:
            redis_up = False
        checks = {
            "redis": "up" if redis_up else "down",
            "rabbitmq": "up" if all(consumer.connected for consumer in consumers) else "down",
        }
        # The provider roads are not probed (an API call per probe would cost money and quota); SMTP
        # is, when it is a road at all.
        if "smtp" in settings.mail_transports:
            checks["smtp"] = "up" if smtp_answers() else "down"
        return checks

    return Worker(consumers=consumers, registry=registry, readiness=readiness, close=mailer.close)


def build_transport(settings: Settings, events: TransportEvents | None = None) -> FailoverTransport:
    """The roads out of MAIL_TRANSPORTS, in order, behind their breakers. Nothing connects yet."""
    roads: list[MailTransport] = []
    for name in settings.mail_transports:
        if name == "smtp":
            roads.append(SmtpConnections.from_settings(settings, sign=dkim_signer(settings)))
        elif name == "ses":
            roads.append(
                SesTransport(
                    settings.ses_region,
                    settings.ses_endpoint_url,
                    timeout_seconds=settings.mail_http_timeout_seconds,
                    pool_size=max(10, settings.worker_threads * 2 + 1),
                )
            )
        elif name == "postmark":
            assert settings.postmark_server_token is not None  # the settings refuse postmark without one
            roads.append(
                PostmarkTransport(
                    settings.postmark_api_url,
                    settings.postmark_server_token.get_secret_value(),
                    timeout_seconds=settings.mail_http_timeout_seconds,
                )
            )
    return FailoverTransport(
        roads,
        failures_to_open=settings.mail_transport_failures_to_open,
        cooldown_seconds=settings.mail_transport_cooldown_seconds,
        events=events,
    )


def dkim_signer(settings: Settings) -> DkimSigner | None:
    if settings.dkim_domain and settings.dkim_selector and settings.dkim_private_key_file:
        # Imported only when signing: dkimpy brings dnspython, PyNaCl and cryptography, about 10 MiB
        # in every worker process that has no DKIM key.
        from email_service.adapters.dkim_signer import DkimSigner

        return DkimSigner.from_file(settings.dkim_domain, settings.dkim_selector, settings.dkim_private_key_file)
    return None


def build_mailer(settings: Settings, transport: FailoverTransport | None = None) -> SmtpMailer:
    return SmtpMailer(
        settings.mail_default_sender,
        transport if transport is not None else build_transport(settings),
        templates=Templates(overrides=settings.email_templates_dir),
        default_locale=settings.default_locale,
    )


def build_handlers(
    settings: Settings,
    *,
    store: PendingStore | None = None,
    mailer: Mailer | None = None,
    clock: Callable[[], float] = time.time,
    events: VerificationEvents | None = None,
    client: redis.Redis | None = None,
    suppressions: Suppressions | None = None,
) -> CodeHandlers:
    """The handlers on real adapters, except those passed in. One Redis client serves the
    store and, without CODE_HMAC_KEY, the shared code key."""

    def shared_client() -> redis.Redis:
        nonlocal client
        if client is None:
            client = redis_client(settings)
        return client

    if store is None:
        store = RedisPendingCodes(
            shared_client(),
            settings.redis_key_prefix,
            replicas=settings.redis_wait_replicas,
            replica_timeout_ms=settings.redis_wait_timeout_ms,
        )
    if mailer is None:
        mailer = build_mailer(settings)
    if suppressions is None:
        beside = store.client if isinstance(store, RedisPendingCodes) else shared_client()
        suppressions = RedisSuppressions(beside, settings.redis_key_prefix)
    hmac_key: Callable[[], str]
    if settings.code_hmac_key is not None:
        hmac_key = ConfiguredCodeKey(settings.code_hmac_key.get_secret_value())
    else:
        hmac_key = SharedCodeKey(shared_client(), settings.redis_key_prefix)
    policy = CodePolicy(
        hmac_key=hmac_key,
        ttl_seconds=settings.code_ttl_seconds,
        max_attempts=settings.code_max_attempts,
        max_codes_per_hour=settings.max_codes_per_hour,
        max_codes_per_day=settings.max_codes_per_day,
        guesses_per_account_per_day=settings.code_guesses_per_account_per_day,
        mail_lock_hold_seconds=SMTP_EXCHANGES_PER_MAIL * settings.smtp_timeout_seconds,
        # Long enough for one slow mail to the same address to finish.
        mail_lock_wait_seconds=settings.smtp_timeout_seconds + 1,
        public_base_url=settings.public_base_url,
    )
    return CodeHandlers(store, mailer, policy, settings.account_confirmed_queue, clock, events, suppressions)


def redis_client(settings: Settings) -> redis.Redis:
    return redis_from_uri(
        settings.redis_uri,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )


def consumed_queues(settings: Settings) -> list[str]:
    return [settings.account_creation_queue, settings.confirm_email_code_queue, settings.account_notifications_queue]


def build_consumers(
    settings: Settings,
    handlers: CodeHandlers,
    observe: Observer | None = None,
    bind_request_id: Callable[[str | None], None] = bind_request_id_to_logs,
) -> list[Consumer]:
    consumer = functools.partial(
        Consumer,
        url=settings.rabbitmq_url,
        topology=settings.topology,
        prefetch=settings.worker_prefetch,
        observe=observe,
        bind_request_id=bind_request_id,
        # Redis down says nothing about the message: hold it rather than spend its retries.
        unavailable=(redis.ConnectionError, redis.TimeoutError),
    )
    # Each consumer owns its connection; several per queue let a slow SMTP
    # exchange for one user not hold up the codes of the others.
    code_requests, code_submissions, notifications = consumed_queues(settings)
    routes = [(code_requests, handlers.code_requests), (code_submissions, handlers.code_submissions)]
    return [
        consumer(queue=queue, handler=handler, name=f"consumer:{queue}:{index}")
        for queue, handler in routes
        for index in range(settings.worker_threads)
    ] + [
        # Notices are few and wait for nobody: one connection, and they go out in the order of their events.
        consumer(queue=notifications, handler=handlers.notifications, name=f"consumer:{notifications}:0")
    ]
