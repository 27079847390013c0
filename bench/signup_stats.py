"""Figures of the sign-up benchmark (bench/auth_peers.py): the project and its peers, side by side.

Pure functions on measured runs, tested on fixed inputs (tests/unit/test_signup_stats.py).
"""

from __future__ import annotations

import email
import email.policy
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.stats import markdown_table, percentile

MIB = 2**20


@dataclass(frozen=True)
class SignupRun:
    """One system, one repetition, one password hash: latencies one request at a time, then a burst."""

    system: str
    hash: str  # "cheap" (bcrypt cost 4 everywhere) or "default" (each system's own)
    register_to_mail: tuple[float, ...]  # seconds from sending the registration to its mail ending at the sink
    confirm_right: tuple[float, ...] = ()
    confirm_wrong: tuple[float, ...] = ()
    registrations: int = 0  # answered as registered inside the burst's window
    window_seconds: float = 0.0
    slice_rates: tuple[float, ...] = ()  # registrations/s in consecutive slices of the window
    cpu_seconds: float = 0.0  # the system's own server processes, inside the window
    cpu_by_process: dict[str, float] = field(default_factory=dict)  # the same, process by process
    infra_cpu_seconds: float = 0.0  # RabbitMQ and Redis in the same window (the project's only)
    mailed: int = 0  # mails the sink counted for the burst, once it had drained
    unexpected: int = 0  # requests answered with another status than the flow calls for
    rss_bytes: dict[str, int] = field(default_factory=dict)  # resident size of each process after the run
    # ... and once it answered, before any request: what the burst's accounts (held in memory by the
    # project's MongoDB stand-in, in SQLite's page cache by the peers) and the warm-up added is the difference.
    rss_start_bytes: dict[str, int] = field(default_factory=dict)
    # The project's: documents its in-process MongoDB stand-in holds after the run, and their bytes with
    # its indexes (a share of auth's resident size that a real MongoDB holds in its own process).
    stand_in: dict[str, float] = field(default_factory=dict)
    # The project's: CPU seconds auth spent inside that stand-in during the burst (in its server processes'
    # figure above), which a real MongoDB spends in its own process.
    stand_in_cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.registrations / self.window_seconds if self.window_seconds > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.registrations if self.registrations else 0.0

    @property
    def infra_cpu_ms(self) -> float:
        return 1000 * self.infra_cpu_seconds / self.registrations if self.registrations else 0.0

    @property
    def stand_in_cpu_ms(self) -> float | None:
        if self.stand_in_cpu_seconds is None or not self.registrations:
            return None
        return 1000 * self.stand_in_cpu_seconds / self.registrations


def rotated(systems: Sequence[str], repetition: int) -> list[str]:
    """The order of the systems in a repetition: each goes first in turn, so no one always runs on a cold
    or a warm machine."""
    shift = repetition % len(systems) if systems else 0
    return [*systems[shift:], *systems[:shift]]


def slice_rates(completions: Sequence[float], start: float, end: float, slice_seconds: float) -> list[float]:
    """Completions per second in consecutive slices of [start, end); a last slice shorter than half a
    slice is left out, as too short to say anything."""
    rates: list[float] = []
    left = start
    while left < end:
        right = min(left + slice_seconds, end)
        if right - left < slice_seconds / 2 and rates:
            break
        count = sum(1 for moment in completions if left <= moment < right)
        rates.append(count / (right - left))
        left = right
    return rates


def mail_text(raw: bytes) -> str:
    """The plain-text part of a mail (or its only part)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(("plain", "html"))
    return body.get_content() if body is not None else ""


def code_in(raw: bytes, pattern: re.Pattern[str]) -> str | None:
    found = pattern.search(mail_text(raw))
    return found.group(0) if found else None


def wrong_code(code: str, alphabet: str) -> str:
    """Another code of the same shape: its first character moved one place on in the code's alphabet."""
    first = alphabet[(alphabet.index(code[0]) + 1) % len(alphabet)]
    return first + code[1:]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.1f}"


def _pair(runs: Sequence[SignupRun], samples: str) -> str:
    """Median over the repetitions of each one's p50, and of each one's p99, in ms."""
    chosen = [getattr(run, samples) for run in runs if getattr(run, samples)]
    p50 = _median([percentile(values, 0.5) for values in chosen])
    p99 = _median([percentile(values, 0.99) for values in chosen])
    return f"{_ms(p50)} / {_ms(p99)}"


def _rate(runs: Sequence[SignupRun]) -> str:
    rates = [run.rate for run in runs if run.registrations]
    if not rates:
        return "n/a"
    median_run = sorted(runs, key=lambda run: run.rate)[len(runs) // 2]
    slices = " → ".join(f"{rate:.0f}" for rate in median_run.slice_rates)
    return f"{statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f}; slices of the median run: {slices})"


def _cpu(runs: Sequence[SignupRun]) -> str:
    counted = [run for run in runs if run.registrations]
    own = _median([run.cpu_ms for run in counted])
    if own is None:
        return "n/a"
    infra = _median([run.infra_cpu_ms for run in counted])
    labels = list(counted[0].cpu_by_process) if len(counted[0].cpu_by_process) > 1 else []
    each = [
        f"{label} {_median([1000 * run.cpu_by_process.get(label, 0.0) / run.registrations for run in counted]):.2f}"
        for label in labels
    ]
    stand_in = _median([ms for run in counted if (ms := run.stand_in_cpu_ms) is not None])
    return (
        f"{own:.2f}"
        + (f" ({', '.join(each)})" if each else "")
        + (f" (+{infra:.2f} RabbitMQ and Redis)" if infra else "")
        + (f"; of auth's, {stand_in:.2f} in the MongoDB stand-in" if stand_in is not None else "")
    )


def _rss(runs: Sequence[SignupRun], which: str = "rss_bytes") -> str:
    last = getattr(runs[-1], which) if runs else {}
    if not last:
        return "n/a"
    total = sum(last.values()) / MIB
    if len(last) == 1:
        return f"{total:.0f}"
    parts = ", ".join(f"{label} {size / MIB:.0f}" for label, size in last.items())
    held = runs[-1].stand_in if which == "rss_bytes" else {}
    if held:
        parts += f"; of auth's, {held['bytes'] / MIB:.1f} MiB are the stand-in's {held['documents']} documents"
    return f"{total:.0f} over {len(last)} processes ({parts})"


def _mailed(runs: Sequence[SignupRun]) -> str:
    registered = sum(run.registrations for run in runs)
    mailed = sum(run.mailed for run in runs)
    unexpected = sum(run.unexpected for run in runs)
    return f"{mailed} of {registered} mailed; {unexpected} unexpected statuses"


def by_system(runs: Sequence[SignupRun], systems: Sequence[str], hash: str) -> dict[str, list[SignupRun]]:
    return {system: [run for run in runs if run.system == system and run.hash == hash] for system in systems}


def signup_table(runs: Sequence[SignupRun], systems: Sequence[str], hash: str) -> str:
    grouped = by_system(runs, systems, hash)
    present = [system for system in systems if grouped[system]]
    reps = max((len(grouped[system]) for system in present), default=0)
    rows = [
        ["register -> code email p50 / p99 ms", *[_pair(grouped[s], "register_to_mail") for s in present]],
        ["confirm, right code p50 / p99 ms", *[_pair(grouped[s], "confirm_right") for s in present]],
        ["confirm, wrong code p50 / p99 ms", *[_pair(grouped[s], "confirm_wrong") for s in present]],
        ["sustained registrations/s", *[_rate(grouped[s]) for s in present]],
        ["CPU ms per registration, server processes", *[_cpu(grouped[s]) for s in present]],
        ["RSS MiB once started", *[_rss(grouped[s], "rss_start_bytes") for s in present]],
        ["RSS MiB after the run", *[_rss(grouped[s]) for s in present]],
        ["mailed, statuses", *[_mailed(grouped[s]) for s in present]],
    ]
    if hash == "default":
        rows = [row for row in rows if not row[0].startswith("confirm")]
    return markdown_table([f"measure (median of {reps})", *present], rows)


def medians(runs: Sequence[SignupRun]) -> dict[str, float | None]:
    """The figures the goals are read from, for one system's runs."""
    return {
        "register_p50": _median([percentile(run.register_to_mail, 0.5) for run in runs if run.register_to_mail]),
        "register_p99": _median([percentile(run.register_to_mail, 0.99) for run in runs if run.register_to_mail]),
        "right_p50": _median([percentile(run.confirm_right, 0.5) for run in runs if run.confirm_right]),
        "right_p99": _median([percentile(run.confirm_right, 0.99) for run in runs if run.confirm_right]),
        "wrong_p50": _median([percentile(run.confirm_wrong, 0.5) for run in runs if run.confirm_wrong]),
        "wrong_p99": _median([percentile(run.confirm_wrong, 0.99) for run in runs if run.confirm_wrong]),
        "rate": _median([run.rate for run in runs if run.registrations]),
        "cpu_ms": _median([run.cpu_ms for run in runs if run.registrations]),
        "infra_cpu_ms": _median([run.infra_cpu_ms for run in runs if run.registrations]),
        "stand_in_cpu_ms": _median([ms for run in runs if (ms := run.stand_in_cpu_ms) is not None]),
        "auth_rss_mib": _median([run.rss_bytes["auth"] / MIB for run in runs if "auth" in run.rss_bytes]),
        "stand_in_mib": _median([run.stand_in["bytes"] / MIB for run in runs if "bytes" in run.stand_in]),
        # Per run, then the median: a median of each part apart could pair figures of different runs.
        "auth_rss_without_stand_in_mib": _median(
            [
                (run.rss_bytes["auth"] - run.stand_in["bytes"]) / MIB
                for run in runs
                if "auth" in run.rss_bytes and "bytes" in run.stand_in
            ]
        ),
        "worker_rss_mib": _median([size for run in runs if (size := largest_worker_mib(run)) is not None]),
    }


def largest_worker_mib(run: SignupRun) -> float | None:
    """The resident size of the run's largest worker process (supervisor included), in MiB."""
    sizes = [size for label, size in run.rss_bytes.items() if label.startswith("worker")]
    return max(sizes) / MIB if sizes else None
