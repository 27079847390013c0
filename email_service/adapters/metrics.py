"""The handlers' events as Prometheus counters, in the registry the worker exposes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.messaging.messages import SUPPRESSION_SOURCES
from email_service.domain.codes import Verdict


class PrometheusVerificationEvents:
    def __init__(self, registry: CollectorRegistry):
        self.codes_issued = Counter("codes_issued", "Verification codes generated and stored", registry=registry)
        self.codes_over_quota = Counter(
            "code_requests_over_quota", "Code requests refused because the address had its quota", registry=registry
        )
        self.code_verdicts = Counter(
            "code_verdicts", "Submitted codes judged, by verdict (the API's words)", ["verdict"], registry=registry
        )
        self.emails_sent = Counter("emails_sent", "Verification emails accepted by the SMTP server", registry=registry)
        self.emails_failed = Counter(
            "emails_failed", "Verification emails the SMTP server did not take, by kind", ["kind"], registry=registry
        )
        self.code_email_delay = Histogram(
            "code_email_delay_seconds",
            "From auth's code request (the 201 of a registration) to the SMTP server accepting the code's email",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
            registry=registry,
        )
        self.emails_suppressed = Counter(
            "emails_suppressed",
            "Emails not sent because their address is on the suppression list",
            registry=registry,
        )
        self.addresses_suppressed = Counter(
            "addresses_suppressed",
            "Addresses put on the suppression list, by source (refusal, postmark, ses)",
            ["source"],
            registry=registry,
        )
        for verdict in Verdict:
            self.code_verdicts.labels(verdict.value)
        for source in SUPPRESSION_SOURCES:
            self.addresses_suppressed.labels(source)
        for kind in ("transient", "permanent"):
            self.emails_failed.labels(kind)

    def code_issued(self) -> None:
        self.codes_issued.inc()

    def code_over_quota(self) -> None:
        self.codes_over_quota.inc()

    def code_judged(self, verdict: Verdict) -> None:
        self.code_verdicts.labels(verdict.value).inc()

    def email_sent(self) -> None:
        self.emails_sent.inc()

    def email_failed(self, permanent: bool) -> None:
        self.emails_failed.labels("permanent" if permanent else "transient").inc()

    def code_mailed(self, seconds_since_request: float) -> None:
        self.code_email_delay.observe(seconds_since_request)

    def email_suppressed(self) -> None:
        self.emails_suppressed.inc()

    def address_suppressed(self, source: str) -> None:
        self.addresses_suppressed.labels(source).inc()


FAILURE_KINDS = ("transient", "permanent", "recipient")


class PrometheusTransportEvents:
    """Per road out: mails it took, failures by kind, mails it took after an earlier road failed,
    and whether its breaker is open now (read at each scrape)."""

    def __init__(self, registry: CollectorRegistry, transports: Iterable[str]):
        names = list(transports)
        self.sent_total = Counter("mail_transport_sent", "Mails a transport accepted", ["transport"], registry=registry)
        self.failed_total = Counter(
            "mail_transport_failed",
            "Mails a transport did not take, by kind (transient: the next one is tried; permanent; recipient: "
            "the address is dead)",
            ["transport", "kind"],
            registry=registry,
        )
        self.failed_over_total = Counter(
            "mail_transport_failed_over",
            "Mails a transport accepted after an earlier one in MAIL_TRANSPORTS failed or rested",
            ["transport"],
            registry=registry,
        )
        self.breaker_opened_total = Counter(
            "mail_transport_breaker_opened", "Times a transport's breaker opened", ["transport"], registry=registry
        )
        self._open = Gauge(
            "mail_transport_open",
            "1 while a transport is skipped (its breaker is open), else 0",
            ["transport"],
            registry=registry,
        )
        for name in names:
            self.sent_total.labels(name)
            self.failed_over_total.labels(name)
            self.breaker_opened_total.labels(name)
            for kind in FAILURE_KINDS:
                self.failed_total.labels(name, kind)

    def watch(self, open_transports: Callable[[], set[str]], names: Iterable[str]) -> None:
        for name in names:
            self._open.labels(name).set_function(_is_open(open_transports, name))

    def sent(self, transport: str, failed_over: bool) -> None:
        self.sent_total.labels(transport).inc()
        if failed_over:
            self.failed_over_total.labels(transport).inc()

    def failed(self, transport: str, kind: str) -> None:
        self.failed_total.labels(transport, kind).inc()

    def breaker(self, transport: str, opened: bool) -> None:
        if opened:
            self.breaker_opened_total.labels(transport).inc()


def _is_open(open_transports: Callable[[], set[str]], name: str) -> Callable[[], float]:
    return lambda: 1.0 if name in open_transports() else 0.0
