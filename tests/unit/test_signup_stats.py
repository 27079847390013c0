"""The sign-up comparison's arithmetic and parsing (bench/signup_stats.py), on fixed inputs."""

from __future__ import annotations

import re
from email.message import EmailMessage

from bench.signup_stats import SignupRun, code_in, medians, rotated, signup_table, slice_rates, wrong_code


def test_each_system_goes_first_in_turn():
    systems = ["project", "allauth", "better-auth"]
    assert [rotated(systems, rep) for rep in range(4)] == [
        ["project", "allauth", "better-auth"],
        ["allauth", "better-auth", "project"],
        ["better-auth", "project", "allauth"],
        ["project", "allauth", "better-auth"],
    ]
    assert rotated([], 2) == []


def test_rates_per_slice_leave_out_a_short_last_slice():
    completions = [0.5, 1.0, 4.9, 5.0, 6.0, 9.0, 10.1]
    assert slice_rates(completions, 0.0, 10.2, 5.0) == [3 / 5, 3 / 5]
    assert slice_rates(completions, 0.0, 13.0, 5.0) == [3 / 5, 3 / 5, 1 / 3]
    assert slice_rates([], 0.0, 2.0, 5.0) == [0.0]


def _mail(text: str, html: str | None = None) -> bytes:
    message = EmailMessage()
    message["Subject"] = "Your code"
    message["To"] = "a@example.com"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


def test_the_code_is_read_from_the_plain_part_of_each_systems_mail():
    digits = re.compile(r"\b\d{6}\b")
    assert code_in(_mail("Your code is 042117.\n", "<p>Your code is <b>999999</b></p>"), digits) == "042117"
    assert code_in(
        _mail("Your verification code is listed below.\n\nPBJM-RMWL\n"), re.compile(r"\b[A-Z0-9]{4}-[A-Z0-9]{4}\b")
    ) == ("PBJM-RMWL")
    assert code_in(_mail("no code here"), digits) is None


def test_a_wrong_code_has_the_right_codes_shape():
    assert wrong_code("042117", "0123456789") == "142117"
    assert wrong_code("942117", "0123456789") == "042117"
    assert wrong_code("ZBCD-FGHJ", "BCDFGHJKLMNPQRSTVWXZ") == "BBCD-FGHJ"


def _run(system: str, rate_registrations: int, cpu: float, **extra) -> SignupRun:
    return SignupRun(
        system=system,
        hash="cheap",
        register_to_mail=(0.010, 0.012, 0.030),
        confirm_right=(0.004, 0.005),
        confirm_wrong=(0.003,),
        registrations=rate_registrations,
        window_seconds=10.0,
        slice_rates=(rate_registrations / 10,),
        cpu_seconds=cpu,
        mailed=rate_registrations,
        **{"rss_bytes": {"server": 64 * 2**20}, **extra},
    )


def test_figures_are_medians_over_the_repetitions():
    runs = [_run("a", 1000, 5.0), _run("a", 1200, 6.0, infra_cpu_seconds=1.2), _run("a", 800, 8.0)]
    figures = medians(runs)
    assert figures["rate"] == 100.0
    assert figures["cpu_ms"] == 5.0  # 5 ms, 5 ms, 10 ms per registration
    assert figures["infra_cpu_ms"] == 0.0
    assert figures["register_p50"] == 0.012 and figures["register_p99"] == 0.030
    assert figures["right_p50"] == 0.004


def test_the_table_has_a_column_per_system_that_ran_and_leaves_confirms_out_of_the_default_hash_part():
    runs = [
        _run("project", 1000, 5.0, infra_cpu_seconds=1.0, cpu_by_process={"auth": 3.0, "worker": 2.0}),
        _run("peer", 2000, 6.0, unexpected=1, cpu_by_process={"server": 6.0}),
    ]
    table = signup_table(runs, ["project", "skipped", "peer"], "cheap")
    assert table.splitlines()[0] == "| measure (median of 1) | project | peer |"
    assert "| sustained registrations/s | 100 (100-100; slices of the median run: 100) | 200" in table
    assert "5.00 (auth 3.00, worker 2.00) (+1.00 RabbitMQ and Redis) | 3.00 |" in table
    assert "1000 of 1000 mailed; 0 unexpected statuses | 2000 of 2000 mailed; 1 unexpected statuses |" in table
    default = signup_table(
        [*runs, SignupRun(system="peer", hash="default", register_to_mail=(0.2,))], ["peer"], "default"
    )
    assert "confirm" not in default and "| register -> code email p50 / p99 ms | 200.0 / 200.0 |" in default


def test_the_stand_ins_cpu_is_shown_as_part_of_auths_and_read_as_a_median():
    runs = [
        _run("project", 1000, 5.0, cpu_by_process={"auth": 3.0, "worker": 2.0}, stand_in_cpu_seconds=1.0),
        _run("project", 1000, 5.0, cpu_by_process={"auth": 3.0, "worker": 2.0}, stand_in_cpu_seconds=1.4),
        _run("project", 1000, 5.0, cpu_by_process={"auth": 3.0, "worker": 2.0}, stand_in_cpu_seconds=1.2),
    ]
    assert medians(runs)["stand_in_cpu_ms"] == 1.2
    assert "5.00 (auth 3.00, worker 2.00); of auth's, 1.20 in the MongoDB stand-in |" in signup_table(
        runs, ["project"], "cheap"
    )
    peer = [_run("peer", 1000, 5.0)]
    assert medians(peer)["stand_in_cpu_ms"] is None and "stand-in" not in signup_table(peer, ["peer"], "cheap")


def test_the_rss_goals_read_auth_with_and_without_the_stand_ins_share_and_the_largest_worker_process():
    from bench.compare import rss_goal_lines

    def project(auth_mib: float, held_mib: float, worker_mib: float) -> SignupRun:
        sizes = {"auth": auth_mib, "worker supervisor": 43.0, "worker 1": worker_mib, "worker 2": worker_mib - 1}
        return _run(
            "project",
            1000,
            5.0,
            rss_bytes={label: int(mib * 2**20) for label, mib in sizes.items()},
            stand_in={"documents": 8000, "bytes": held_mib * 2**20},
        )

    figures = medians([project(96.0, 8.5, 51.0), project(92.0, 4.0, 52.0), project(99.0, 9.0, 61.0)])
    assert figures["auth_rss_mib"] == 96.0 and figures["stand_in_mib"] == 8.5 and figures["worker_rss_mib"] == 52.0
    # Each run's own difference (87.5, 88.0, 90.0), then the median: not 96.0 - 8.5.
    assert figures["auth_rss_without_stand_in_mib"] == 88.0
    auth, worker = rss_goal_lines(figures)
    assert auth == (
        "- auth's RSS after the run at most 90 MiB: 96.0 MiB: **no**; without the MongoDB stand-in's "
        "documents and indexes (8.5 MiB): 88.0 MiB: yes"
    )
    assert worker == "- each worker process's RSS after the run at most 60 MiB: the largest 52.0 MiB: yes"
    peer = medians([_run("peer", 1000, 5.0)])
    assert peer["auth_rss_mib"] is None and peer["auth_rss_without_stand_in_mib"] is None
    assert rss_goal_lines(peer) == []
