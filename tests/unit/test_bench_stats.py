"""The arithmetic of `make bench`'s tables (bench/stats.py), on fixed runs."""

from __future__ import annotations

import pytest

from bench.stats import (
    DrainRun,
    LatencyRun,
    Spread,
    confirm_ratio,
    group_runs,
    latency_table,
    median_rate,
    percentile,
    ratio,
    throughput_table,
)

MIB = 2**20


def run(system: str, mails_per_second: float, cpu_ms: float = 5.0, **changes) -> DrainRun:
    """A run of 1,000 mails in the window at the given rate and CPU per mail."""
    seconds = 1000 / mails_per_second
    fields = {
        "system": system,
        "expected": 1000,
        "delivered": 1000,
        "window_mails": 1000,
        "window_seconds": seconds,
        "cpu_seconds": cpu_ms,  # 1,000 mails: seconds of CPU equal ms per mail
        "peak_rss_bytes": 40 * MIB,
        "sink_cpu_seconds": seconds / 4,
        "processes": 1,
    }
    return DrainRun(**{**fields, **changes})


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2
    assert percentile([7.0], 0.99) == 7
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_spread_is_min_median_max_whatever_the_order():
    spread = Spread.of([157.0, 149.0, 157.5])
    assert (spread.low, spread.median, spread.high) == (149.0, 157.0, 157.5)
    assert spread.format() == "149 / 157 / 158"
    assert Spread.of([1.25, 2.5]).format(2) == "1.25 / 1.88 / 2.50"


def test_a_run_gives_rate_cpu_per_mail_and_cores_from_its_window():
    drained = DrainRun(
        system="x",
        expected=2000,
        delivered=2000,
        window_mails=1990,
        window_seconds=10.0,
        cpu_seconds=9.2,
        peak_rss_bytes=50 * MIB,
        sink_cpu_seconds=2.5,
    )
    assert drained.mails_per_second == pytest.approx(199.0)
    assert drained.cpu_ms_per_mail == pytest.approx(9200 / 1990)
    assert drained.cores == pytest.approx(0.92)
    assert drained.sink_cores == pytest.approx(0.25)
    assert drained.complete


def test_a_run_short_of_mails_or_with_parked_messages_is_not_complete():
    assert not run("x", 100, delivered=999).complete
    assert not run("x", 100, delivered=1001).complete  # a duplicate mail is no success either
    assert not run("x", 100, parked=1).complete


def test_runs_are_grouped_by_system_in_order_of_first_appearance():
    runs = [run("project", 150), run("raw", 250), run("project", 157), run("raw", 329), run("project", 149)]
    figures = group_runs(runs)
    assert [figure.system for figure in figures] == ["project", "raw"]
    assert figures[0].rate == Spread(149, 150, 157)
    assert median_rate(figures, "raw") == pytest.approx((250 + 329) / 2)
    assert median_rate(figures, "celery") is None


def test_ratios_of_medians_and_missing_figures():
    figures = group_runs(
        [run("project", r) for r in (149, 157, 157)]
        + [run("raw", r) for r in (251, 255, 329)]
        + [run("celery", r) for r in (282, 339, 342)]
    )
    assert ratio(median_rate(figures, "project"), median_rate(figures, "raw")) == pytest.approx(157 / 255)
    assert ratio(median_rate(figures, "project"), median_rate(figures, "celery")) == pytest.approx(157 / 339)
    assert ratio(None, 3.0) is None
    assert ratio(3.0, 0.0) is None


def test_throughput_table_rows():
    runs = [
        run("project", 149, cpu_ms=5.8, peak_rss_bytes=44 * MIB),
        run("project", 157, cpu_ms=6.0, peak_rss_bytes=46 * MIB),
        run("project", 160, cpu_ms=5.6, peak_rss_bytes=45 * MIB),
        run("celery", 339, cpu_ms=6.0, processes=3, delivered=990),
    ]
    lines = throughput_table(group_runs(runs)).splitlines()
    assert lines[0].startswith("| system | processes | mails/s min / median / max | CPU ms per mail |")
    assert lines[2] == "| project | 1 | 149 / 157 / 160 | 5.80 | 0.90 | 46 | 0.25 | all |"
    assert lines[3] == "| celery | 3 | 339 / 339 / 339 | 6.00 | 2.03 | 40 | 0.25 | 990/1000 |"


def test_latency_table_and_confirm_ratios():
    # Per repetition: confirm, healthz and RPC samples in seconds.
    reps = [
        LatencyRun(
            confirm=tuple([0.010] * 98 + [0.030, 0.040]),
            healthz=tuple([0.001] * 99 + [0.002]),
            rpc=tuple([0.002] * 99 + [0.004]),
        ),
        LatencyRun(
            confirm=tuple([0.012] * 98 + [0.036, 0.050]),
            healthz=tuple([0.001] * 99 + [0.003]),
            rpc=tuple([0.003] * 99 + [0.005]),
        ),
        LatencyRun(
            confirm=tuple([0.014] * 98 + [0.040, 0.060]),
            healthz=tuple([0.002] * 99 + [0.004]),
            rpc=tuple([0.003] * 99 + [0.006]),
        ),
    ]
    lines = latency_table(reps).splitlines()
    assert lines[2] == "| /auth/confirm | 10.00 / 12.00 / 14.00 | 30.00 / 36.00 / 40.00 | 300 |"
    assert lines[3] == "| /healthz | 1.00 / 1.00 / 2.00 | 1.00 / 1.00 / 2.00 | 300 |"
    assert lines[4] == "| raw direct reply-to RPC, quorum queue | 2.00 / 3.00 / 3.00 | 2.00 / 3.00 / 3.00 | 300 |"
    # p50: median confirm 12 ms over (median healthz 1 ms + median RPC 3 ms); p99 alike: 36 / (1 + 3).
    assert confirm_ratio(reps, 0.5) == pytest.approx(3.0)
    assert confirm_ratio(reps, 0.99) == pytest.approx(9.0)
