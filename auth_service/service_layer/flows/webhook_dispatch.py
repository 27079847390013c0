"""Delivering account events to webhook endpoints: fan-out, attempts, retries, giving up.

An event taken off the dispatcher's queue becomes one delivery per endpoint
whose patterns match it, stored before the event is acked; from there each
delivery lives in MongoDB, not in the event. Its attempts run on its
endpoint's lane (auth_service/entrypoints/webhooks.py), so a slow or dead
endpoint holds only its own deliveries back. A failed attempt is scheduled
with the broker: a message into the retry queue of its step of
WEBHOOK_RETRY_SCHEDULE, which comes back when the step's time is up; after the
last step the delivery is failed. An endpoint that has not had one success for
WEBHOOK_DISABLE_AFTER_DAYS is disabled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auth_service.domain import webhooks as rules
from auth_service.domain.webhooks import Attempt, AttemptOutcome, Delivery, DeliveryStatus
from auth_service.ports import BrokerUnavailable, WebhookObserver, WebhookPoster, WebhookStore, WebhookTimers
from common import tracing

log = logging.getLogger(__name__)

# A lease outlives an attempt by this much: a dispatcher that died mid-attempt is taken over after it.
LEASE_MARGIN = timedelta(seconds=5)
# A scheduled retry whose timer message has not come back this long after it was due was lost.
TIMER_OVERDUE = timedelta(seconds=60)


@dataclass(frozen=True)
class DispatchPolicy:
    timeout_seconds: float
    retry_schedule: tuple[int, ...]
    disable_after: timedelta


class WebhookDispatch:
    def __init__(
        self,
        store: WebhookStore,
        poster: WebhookPoster,
        timers: WebhookTimers,
        policy: DispatchPolicy,
        observer: WebhookObserver,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._poster = poster
        self._timers = timers
        self._policy = policy
        self._observer = observer
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def fan_out(self, event_type: str, event_id: str, body: str) -> list[tuple[str, str]]:
        """Store a delivery of the event for each enabled endpoint that wants it; returns (delivery, endpoint)
        ids. Idempotent: an event handed over again finds its deliveries stored."""
        now = self._now()
        carrier: dict[str, str] = {}
        tracing.inject_current(carrier)
        due = []
        for endpoint_id in rules.subscribers(self._store.subscriptions(), event_type):
            delivery = Delivery(
                id=rules.delivery_id(event_id, endpoint_id),
                endpoint_id=endpoint_id,
                event_id=event_id,
                event_type=event_type,
                body=body,
                created_at=now,
                trace_headers=carrier,
            )
            self._store.add_delivery(delivery)
            due.append((delivery.id, endpoint_id))
        return due

    def has_subscribers(self) -> bool:
        """Does any enabled endpoint want events (so the webhooks queue must receive them)?"""
        return bool(self._store.subscriptions())

    def timer_due(self, delivery_id: str, failed_attempts: int | None) -> bool:
        """A scheduled retry's message came back: True if the delivery is due for an attempt now."""
        if failed_attempts is None:
            return True  # made due already (by hand): the message only wakes a dispatcher
        return self._store.make_due(delivery_id, failed_attempts)

    def stranded(self) -> list[tuple[str, str]]:
        """Deliveries nobody is working on (see MongoWebhooks.stranded), for the lanes."""
        now = self._now()
        return self._store.stranded(now, now - TIMER_OVERDUE, limit=1000)

    def attempt(self, delivery_id: str) -> DeliveryStatus | None:
        """One attempt of the delivery, if it is due and nobody else holds it; returns where it stands after."""
        now = self._now()
        lease = timedelta(seconds=self._policy.timeout_seconds) + LEASE_MARGIN
        delivery = self._store.claim(delivery_id, now, lease)
        if delivery is None:
            return None
        endpoint = self._store.endpoint(delivery.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            self._store.close(delivery_id, DeliveryStatus.FAILED)
            log.info("webhook delivery dropped: its endpoint is gone or disabled", extra={"delivery_id": delivery_id})
            return DeliveryStatus.FAILED
        timestamp = int(now.timestamp())
        body = delivery.body.encode()
        headers = rules.delivery_headers(endpoint.signing_secrets(now), delivery.event_id, timestamp, body)
        with tracing.continuing(
            f"webhook {delivery.event_type}",
            delivery.trace_headers,
            **{"webhook.endpoint_id": endpoint.id, "webhook.delivery_id": delivery_id},
        ) as span:
            result = self._poster.post(endpoint.url, body, headers, self._policy.timeout_seconds)
            span.set_attribute("webhook.outcome", result.outcome.value)
            if result.status_code is not None:
                span.set_attribute("http.response.status_code", result.status_code)
        return self._settle(delivery, result.outcome, result.duration_seconds, result.status_code, result.error)

    def _settle(
        self,
        delivery: Delivery,
        outcome: AttemptOutcome,
        seconds: float,
        status_code: int | None,
        error: str | None,
    ) -> DeliveryStatus:
        now = self._now()
        attempt = Attempt(now, outcome, round(seconds * 1000), status_code, error)
        failed_attempts = len(delivery.attempts) + 1
        next_at = None
        if outcome is AttemptOutcome.SUCCESS:
            status = DeliveryStatus.DELIVERED
        elif not rules.retried(outcome):
            status = DeliveryStatus.REFUSED
        else:
            delay = rules.next_retry_delay(failed_attempts, self._policy.retry_schedule)
            status = DeliveryStatus.FAILED if delay is None else DeliveryStatus.RETRYING
            next_at = None if delay is None else now + timedelta(seconds=delay)
        # Stored first, then scheduled: a timer that cannot be published leaves an overdue retry the sweep finds.
        self._store.finish_attempt(delivery.id, attempt, status, next_at)
        if next_at is not None:
            try:
                self._timers.due(
                    delivery.id, delivery.endpoint_id, failed_attempts, int((next_at - now).total_seconds())
                )
            except BrokerUnavailable:
                log.warning("webhook retry not scheduled: broker unavailable; the sweep will find it")
        self._observer.attempted(outcome, status, seconds)
        log.info(
            "webhook attempt",
            extra={
                "delivery_id": delivery.id,
                "endpoint_id": delivery.endpoint_id,
                "outcome": outcome.value,
                "status_code": status_code,
                "delivery_status": status.value,
            },
        )
        self._follow_endpoint(delivery.endpoint_id, outcome, now)
        return status

    def _follow_endpoint(self, endpoint_id: str, outcome: AttemptOutcome, now: datetime) -> None:
        if outcome is AttemptOutcome.SUCCESS:
            self._store.record_success(endpoint_id)
            return
        failing_since = self._store.record_failure(endpoint_id, now)
        if rules.given_up(failing_since, now, self._policy.disable_after) and self._store.disable(endpoint_id, now):
            self._observer.endpoint_disabled()
            log.warning("webhook endpoint disabled: no success for too long", extra={"endpoint_id": endpoint_id})
