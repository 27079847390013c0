"""What an operator sees of the webhooks: deliveries by outcome, attempt latency, endpoints disabled,
and how long each failing endpoint has gone without a success (the alert's series)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from auth_service.domain.webhooks import AttemptOutcome, DeliveryStatus

log = logging.getLogger(__name__)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.deliveries = Counter(
            "webhook_deliveries",
            "Webhook attempts by where they left the delivery: delivered, retrying, failed (schedule over), refused",
            ["outcome"],
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            "webhook_attempt_seconds",
            "Time of one webhook POST, by result (success, http_error, redirect, timeout, connection_error, refused)",
            ["result"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.disabled = Counter(
            "webhook_endpoints_disabled",
            "Webhook endpoints disabled after WEBHOOK_DISABLE_AFTER_DAYS without a success",
            registry=registry,
        )
        # Zeros from the start, so that a rate or an alert has a series before the first delivery.
        for status in (
            DeliveryStatus.DELIVERED,
            DeliveryStatus.RETRYING,
            DeliveryStatus.FAILED,
            DeliveryStatus.REFUSED,
        ):
            self.deliveries.labels(outcome=status.value)
        for outcome in AttemptOutcome:
            self.attempt_seconds.labels(result=outcome.value)

    def attempted(self, outcome: AttemptOutcome, delivery_status: DeliveryStatus, seconds: float) -> None:
        self.deliveries.labels(outcome=delivery_status.value).inc()
        self.attempt_seconds.labels(result=outcome.value).observe(seconds)

    def endpoint_disabled(self) -> None:
        self.disabled.inc()


class FailingEndpoints(Collector):
    """``webhook_endpoint_failing_seconds{endpoint}``: read from MongoDB at each scrape, so every process
    (and replica) reports the same, and an endpoint that recovers or goes away leaves no stale series."""

    def __init__(self, failing_since: Callable[[], dict[str, datetime]], clock: Callable[[], float] = time.time):
        self._failing_since = failing_since
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "webhook_endpoint_failing_seconds",
            "Seconds since an enabled webhook endpoint's first failure after its last success",
            labels=["endpoint"],
        )
        try:
            failing = self._failing_since()
        except Exception:  # a scrape must not fail because MongoDB is away; /readyz says that already
            log.warning("webhook endpoints not read for the metrics")
            failing = {}
        now = self._clock()
        for endpoint_id, since in failing.items():
            family.add_metric([endpoint_id], max(0.0, now - since.timestamp()))
        yield family
        # One series always there (0 when every endpoint succeeds): what the alert watches.
        longest = GaugeMetricFamily(
            "webhook_endpoint_longest_failing_seconds",
            "Seconds the longest-failing enabled webhook endpoint has gone without a success (0: none failing)",
        )
        longest.add_metric([], max((now - since.timestamp() for since in failing.values()), default=0.0))
        yield longest
