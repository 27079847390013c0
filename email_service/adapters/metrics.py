"""The handlers' events as Prometheus counters, in the registry the worker exposes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
        for verdict in Verdict:
            self.code_verdicts.labels(verdict.value)
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
