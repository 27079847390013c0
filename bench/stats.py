"""Figures of the comparison benchmark (bench/compare.py) and the tables it prints.

Pure functions on measured runs, so the arithmetic of the tables is tested on
fixed inputs (tests/unit/test_bench_stats.py) apart from the servers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the values at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class Spread:
    """Minimum, median and maximum of one figure over the repetitions."""

    low: float
    median: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        return cls(min(values), statistics.median(values), max(values))

    def format(self, digits: int = 0) -> str:
        return " / ".join(f"{value:,.{digits}f}" for value in (self.low, self.median, self.high))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def format_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@dataclass(frozen=True)
class DrainRun:
    """One system draining pre-queued messages into the counting sink.

    The window runs from the first mail the sink counted to the last one, so
    process start-up (imports, connecting) is left out of rate and CPU alike.
    """

    system: str
    expected: int
    delivered: int  # mails the sink counted for this run, start-up included
    window_mails: int  # mails counted inside the window
    window_seconds: float
    cpu_seconds: float  # user + system time of the system's process tree inside the window
    peak_rss_bytes: int  # sum of the peak resident sizes (VmHWM) of its processes
    sink_cpu_seconds: float = 0.0
    processes: int = 1  # in the system's process tree during the window
    parked: int = 0  # messages left in retry or dead-letter queues

    @property
    def complete(self) -> bool:
        return self.delivered == self.expected and self.parked == 0

    @property
    def mails_per_second(self) -> float:
        return self.window_mails / self.window_seconds if self.window_seconds > 0 else 0.0

    @property
    def cpu_ms_per_mail(self) -> float:
        return 1000 * self.cpu_seconds / self.window_mails if self.window_mails else 0.0

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.window_seconds if self.window_seconds > 0 else 0.0

    @property
    def sink_cores(self) -> float:
        return self.sink_cpu_seconds / self.window_seconds if self.window_seconds > 0 else 0.0


@dataclass(frozen=True)
class SystemFigures:
    """A system's runs over the repetitions, reduced to what the table shows."""

    system: str
    runs: tuple[DrainRun, ...]

    @property
    def rate(self) -> Spread:
        return Spread.of([run.mails_per_second for run in self.runs])

    @property
    def cpu_ms_per_mail(self) -> float:
        return statistics.median(run.cpu_ms_per_mail for run in self.runs)

    @property
    def cores(self) -> float:
        return statistics.median(run.cores for run in self.runs)

    @property
    def sink_cores(self) -> float:
        return statistics.median(run.sink_cores for run in self.runs)

    @property
    def processes(self) -> int:
        return max(run.processes for run in self.runs)

    @property
    def peak_rss_mib(self) -> float:
        return max(run.peak_rss_bytes for run in self.runs) / 2**20

    @property
    def delivered(self) -> str:
        return "all" if all(run.complete for run in self.runs) else _shortfall(self.runs)


def _shortfall(runs: Sequence[DrainRun]) -> str:
    return "; ".join(
        f"{run.delivered}/{run.expected}" + (f", {run.parked} parked" if run.parked else "") for run in runs
    )


def group_runs(runs: Sequence[DrainRun]) -> list[SystemFigures]:
    """Runs by system, in the order each system first appears."""
    systems: dict[str, list[DrainRun]] = {}
    for run in runs:
        systems.setdefault(run.system, []).append(run)
    return [SystemFigures(system, tuple(runs)) for system, runs in systems.items()]


def median_rate(figures: Sequence[SystemFigures], system: str) -> float | None:
    for figure in figures:
        if figure.system == system:
            return figure.rate.median
    return None


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(figures: Sequence[SystemFigures]) -> str:
    headers = [
        "system",
        "processes",
        "mails/s min / median / max",
        "CPU ms per mail",
        "cores used",
        "peak RSS MiB",
        "sink cores",
        "delivered",
    ]
    rows = [
        [
            figure.system,
            str(figure.processes),
            figure.rate.format(),
            f"{figure.cpu_ms_per_mail:.2f}",
            f"{figure.cores:.2f}",
            f"{figure.peak_rss_mib:.0f}",
            f"{figure.sink_cores:.2f}",
            figure.delivered,
        ]
        for figure in figures
    ]
    return markdown_table(headers, rows)


@dataclass(frozen=True)
class LatencyRun:
    """One repetition of the confirm measurement: every sample in seconds."""

    confirm: tuple[float, ...]
    healthz: tuple[float, ...]
    rpc: tuple[float, ...]
    unexpected: int = 0  # confirms whose status was not the one the code called for


LATENCY_FIGURES = (
    ("/auth/confirm", "confirm"),
    ("/healthz", "healthz"),
    ("raw direct reply-to RPC, quorum queue", "rpc"),
)


def latency_table(runs: Sequence[LatencyRun]) -> str:
    rows = []
    for label, attribute in LATENCY_FIGURES:
        samples = [getattr(run, attribute) for run in runs]
        rows.append(
            [
                label,
                Spread.of([1000 * percentile(values, 0.5) for values in samples]).format(2),
                Spread.of([1000 * percentile(values, 0.99) for values in samples]).format(2),
                str(sum(len(values) for values in samples)),
            ]
        )
    return markdown_table(["request", "p50 ms min / median / max", "p99 ms min / median / max", "samples"], rows)


def confirm_ratio(runs: Sequence[LatencyRun], fraction: float) -> float | None:
    """Confirm's percentile over the sum of healthz's and the raw RPC's, medians over the repetitions."""

    def median_of(attribute: str) -> float:
        return statistics.median(percentile(getattr(run, attribute), fraction) for run in runs)

    return ratio(median_of("confirm"), median_of("healthz") + median_of("rpc"))
