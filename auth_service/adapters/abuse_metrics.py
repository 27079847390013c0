"""What an operator sees of the sign-up abuse checks: refusals by reason, checks skipped, and the calls out."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from auth_service.domain.abuse import Refusal

UNCHECKED = {"pwned_passwords": ("timeout", "error")}


class AbuseMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.refusals = Counter(
            "abuse_refusals",
            "Requests refused by a sign-up abuse check, by reason (none says whether the address has an account)",
            ["reason"],
            registry=registry,
        )
        self.unchecked_total = Counter(
            "abuse_checks_skipped",
            "Checks that could not be made and were let through (failing open), by check and why",
            ["check", "reason"],
            registry=registry,
        )
        self.range_lookups = Counter(
            "pwned_passwords_lookups",
            "Breached-password range look-ups, by where the answer came from (cache, api) or failed",
            ["source"],
            registry=registry,
        )
        self.captcha_seconds = Histogram(
            "captcha_verify_seconds",
            "Time of a CAPTCHA provider's siteverify call, by outcome (success, failure, unavailable)",
            ["outcome"],
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        # Zeros from the start, so that a rate or an alert has a series before the first refusal.
        for reason in Refusal:
            self.refusals.labels(reason.value)
        for check, reasons in UNCHECKED.items():
            for why in reasons:
                self.unchecked_total.labels(check, why)

    def refused(self, reason: Refusal) -> None:
        self.refusals.labels(reason.value).inc()

    def unchecked(self, check: str, reason: str) -> None:
        self.unchecked_total.labels(check, reason).inc()

    def range_lookup(self, source: str) -> None:
        self.range_lookups.labels(source).inc()

    def captcha_verified(self, outcome: str, seconds: float) -> None:
        self.captcha_seconds.labels(outcome).observe(seconds)
