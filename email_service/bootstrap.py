"""The one place that wires the worker: real adapters by default, fakes where tests pass them."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from common.messaging.consumer import Consumer, Observer
from email_service.adapters.mailer import FlaskMailer, mail_app
from email_service.adapters.pending_store import RedisPendingRegistrations
from email_service.config import Settings
from email_service.handlers import CodePolicy, VerificationHandlers
from email_service.ports import Mailer, PendingStore


def build_handlers(
    settings: Settings,
    *,
    store: PendingStore | None = None,
    mailer: Mailer | None = None,
    clock: Callable[[], float] = time.time,
) -> VerificationHandlers:
    if store is None:
        store = RedisPendingRegistrations(redis_client(settings), settings.redis_key_prefix)
    if mailer is None:
        mailer = FlaskMailer(mail_app(settings), timeout=settings.smtp_timeout_seconds)
    policy = CodePolicy(
        hmac_key=settings.code_hmac_key,
        ttl_seconds=settings.code_ttl_seconds,
        max_attempts=settings.code_max_attempts,
        max_codes_per_hour=settings.max_codes_per_hour,
        max_codes_per_day=settings.max_codes_per_day,
    )
    return VerificationHandlers(store, mailer, policy, settings.account_confirmed_queue, clock)


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )


def build_consumers(
    settings: Settings,
    handlers: VerificationHandlers,
    observe: Observer | None = None,
    bind_request_id: Callable[[str | None], None] | None = None,
) -> list[Consumer]:
    common = {
        "url": settings.rabbitmq_url,
        "declare": settings.work_queues,
        "prefetch": settings.prefetch,
        "observe": observe,
        "bind_request_id": bind_request_id,
        "retry_delays": settings.retry_delays_seconds,
        # Redis down says nothing about the message: hold it rather than spend its retries.
        "unavailable": (redis.ConnectionError, redis.TimeoutError),
    }
    return [
        Consumer(queue=settings.account_creation_queue, handler=handlers.on_code_requested, **common),
        Consumer(queue=settings.confirm_email_code_queue, handler=handlers.on_code_submitted, **common),
    ]
