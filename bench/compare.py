"""``make bench``: the email worker held against what people would use instead, on this machine.

Three parts, in one process tree and one run, every system on queue names of
its own on this machine's RabbitMQ and Redis:

1. throughput: the project's worker (``python -m email_service`` with its
   default processes and threads), a raw pika + smtplib consumer and Celery
   (prefork with 2 processes, and threads) each drain the same number of
   pre-queued account-creation messages into a counting SMTP sink that runs
   in a process of its own; mails/s, CPU per mail and peak RSS of each;
2. confirm: /auth/confirm p50/p99 on the real auth service and worker,
   against /healthz and a raw direct reply-to RPC over a quorum queue;
3. TLS: the same drain into a STARTTLS sink with a login and a simulated
   delay per SMTP round trip, with and without SMTP connection reuse;
4. sign-up: the project against django-allauth and better-auth, each as
   deployed, on one SMTP sink: register -> code email and confirm latency,
   sustained registrations/s, CPU per registration and memory
   (bench/auth_peers.py).

Every queue it declares (retry and dead-letter queues included) and every
Redis key it writes is removed at the end, also when it fails or is
interrupted. Prints markdown tables (docs/performance.md explains them).

    make bench                                  # 2,000 messages, 3 repetitions
    make bench BENCH_ARGS=--quick               # a smoke run of every part
    python -m bench.compare --messages 500 --reps 1 --parts throughput --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from bench import auth_peers
from bench import sink as smtp_sink
from bench.confirm_latency import MONGO_STAND_IN, ConfirmOutcome, measure_confirm
from bench.peers import PeerConfig
from bench.processes import cpu_seconds, peak_rss_bytes, process_tree
from bench.signup_stats import SignupRun, by_system, medians, signup_table
from bench.stats import (
    DrainRun,
    confirm_ratio,
    format_ratio,
    group_runs,
    latency_table,
    median_rate,
    ratio,
    throughput_table,
)
from bench.workload import (
    RUN_PREFIX,
    Leftovers,
    code_request,
    declare_worker_queues,
    parked_messages,
    publish_code_requests,
    run_topology,
    wait_for_depth,
)
from common.messaging import topology
from devtools.mailsink import free_ports
from devtools.stack import Service, preflight, unique_names

PARTS = ("throughput", "confirm", "tls", "signup")
CELERY_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING")


START_ATTEMPTS = 3


class StartupFailed(RuntimeError):
    """The system under measurement exited before it mailed anything."""


@dataclass(frozen=True)
class System:
    label: str
    module: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_project(self) -> bool:
        return self.module == "email_service"

    @property
    def is_celery(self) -> bool:
        return self.module == "celery"


PROJECT = System("project worker (python -m email_service, defaults)", "email_service")
PROJECT_ONE_PROCESS = System(
    "project worker, 1 process (WORKER_PROCESSES=1)", "email_service", env={"WORKER_PROCESSES": "1"}
)
# SMTP_IDLE_SECONDS=0: no kept connection is ever young enough to reuse, so every mail opens its own.
PROJECT_NEW_CONNECTION = System(
    "project worker, defaults but a new SMTP connection per mail (SMTP_IDLE_SECONDS=0)",
    "email_service",
    env={"SMTP_IDLE_SECONDS": "0"},
)
RAW = System(
    "raw pika + smtplib, 1 thread, kept SMTP connection", "bench.raw_consumer", env={"BENCH_SMTP_REUSE": "true"}
)
RAW_NEW_CONNECTION = System(
    "raw pika + smtplib, 1 thread, new SMTP connection per mail",
    "bench.raw_consumer",
    env={"BENCH_SMTP_REUSE": "false"},
)
CELERY_PREFORK = System(
    "Celery prefork, 2 processes",
    "celery",
    ("-A", "bench.celery_peer", "worker", "--pool", "prefork", "--concurrency", "2", *CELERY_FLAGS),
)
CELERY_THREADS = System(
    "Celery threads, 4 threads",
    "celery",
    ("-A", "bench.celery_peer", "worker", "--pool", "threads", "--concurrency", "4", *CELERY_FLAGS),
)
THROUGHPUT_SYSTEMS = (PROJECT, PROJECT_ONE_PROCESS, RAW, CELERY_PREFORK, CELERY_THREADS)
TLS_SYSTEMS = (PROJECT, PROJECT_NEW_CONNECTION, RAW, RAW_NEW_CONNECTION)


@dataclass
class Bench:
    """What every part shares: the servers, the environment, the log folder and the leftovers to remove."""

    settings: dict[str, str]
    log_dir: Path
    leftovers: list[Leftovers] = field(default_factory=list)
    runs: int = 0

    @property
    def base_env(self) -> dict[str, str]:
        return {**os.environ, **self.settings}

    @property
    def rabbitmq_url(self) -> str:
        return self.settings["RABBITMQ_URL"]

    @property
    def redis_url(self) -> str:
        return self.settings["REDIS_URL"]

    def remove_leftovers(self) -> None:
        Leftovers.all_of(self.leftovers).remove()


def bench_settings() -> dict[str, str]:
    """The services in production mode, as deployed, with throwaway secrets and the default retry ladder."""
    return {
        "RABBITMQ_URL": os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "APP_ENV": "production",
        "JWT_SECRET": "benchmark-only-jwt-secret-0123456789abcdef",
        "CODE_HMAC_KEY": "benchmark-only-code-key-0123456789abcdef",
        "ALLOW_WEAK_BCRYPT": "true",
        "RETRY_DELAYS_SECONDS": ",".join(str(delay) for delay in topology.RETRY_DELAYS_SECONDS),
        "SMTP_USE_TLS": "false",
        "SMTP_USE_SSL": "false",
        "SMTP_USERNAME": "",
        "SMTP_PASSWORD": "",
        "WORKER_METRICS_HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }


def drain(bench: Bench, system: System, sink: smtp_sink.CountingSink, count: int, timeout: float) -> DrainRun:
    """Pre-queue ``count`` code requests for ``system`` on queues of its own, start it, and time the drain."""
    names = unique_names(RUN_PREFIX)
    queue = names["ACCOUNT_CREATION_QUEUE"]
    mine = Leftovers(bench.rabbitmq_url, bench.redis_url)
    mine.add_names(names)
    bench.leftovers.append(mine)
    bench.runs += 1
    env = {
        **bench.base_env,
        **names,
        **sink.smtp_settings(),
        **system.env,
        "BENCH_QUEUE": queue,
        "WORKER_METRICS_PORT": str(free_ports(os.cpu_count() or 1)),
    }
    tag = queue.removesuffix(".account_creation")  # for addresses of the run's own
    try:
        if system.is_celery:
            _prequeue_celery(PeerConfig.from_env(env), count, tag)
        else:
            routes = run_topology(names)
            declare_worker_queues(bench.rabbitmq_url, routes)
            publish_code_requests(bench.rabbitmq_url, routes, count, tag)
        wait_for_depth(bench.rabbitmq_url, queue, count)
        log_path = bench.log_dir / f"run{bench.runs:02d}-{system.module}.log"
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                run = _timed_drain(
                    system.label, Service(system.module, env, log_path, args=system.args), sink, count, timeout
                )
                break
            except StartupFailed as error:
                # On a shared machine the free port chosen for its metrics can be taken before it binds it.
                if attempt == START_ATTEMPTS:
                    raise
                progress(f"{system.label} did not start, trying again: {str(error).splitlines()[0]}")
                env["WORKER_METRICS_PORT"] = str(free_ports(os.cpu_count() or 1))
        if system.is_project:
            run = dataclasses.replace(run, parked=parked_messages(bench.rabbitmq_url, queue))
        return run
    finally:
        mine.remove()


def _prequeue_celery(config: PeerConfig, count: int, tag: str) -> None:
    from bench import celery_peer  # Celery is the benchmark's own dependency (requirements/bench.txt)

    app = celery_peer.build_app(config)
    try:
        with app.connection_for_write() as connection:
            celery_peer.work_queue(config.queue)(connection.default_channel).declare()
            with app.producer_or_acquire() as producer:
                for index in range(count):
                    body = code_request(f"user{index}.{tag}@example.com", f"User {index}").body
                    app.send_task(
                        celery_peer.TASK_NAME,
                        args=[body["user_id"], body["email"], body["name"], body["requested_at"]],
                        producer=producer,
                    )
    finally:
        app.close()


def _timed_drain(label: str, service: Service, sink: smtp_sink.CountingSink, count: int, timeout: float) -> DrainRun:
    """Start the system and time it from the first mail the sink counts to the last one."""
    before = sink.count
    sink_process = [psutil.Process(sink.pid)]
    deadline = time.monotonic() + timeout

    def running() -> bool:
        if service.started.poll() is not None:
            failure = StartupFailed if sink.count == before else RuntimeError
            raise failure(f"{label} exited with {service.started.returncode}:\n{service.log_text()[-3000:]}")
        return time.monotonic() < deadline

    service.start()
    try:
        while sink.count == before and running():
            time.sleep(0.002)
        tree = process_tree(service.started.pid)
        started, first, cpu_at_first, sink_cpu_at_first = (
            time.perf_counter(),
            sink.count,
            cpu_seconds(tree),
            cpu_seconds(sink_process),
        )
        while sink.count - before < count and running():
            time.sleep(0.005)
        ended, last = time.perf_counter(), sink.count
        tree = process_tree(service.started.pid)
        cpu, sink_cpu = cpu_seconds(tree) - cpu_at_first, cpu_seconds(sink_process) - sink_cpu_at_first
        peak_rss = peak_rss_bytes(tree)
    finally:
        service.stop()
    return DrainRun(
        system=label,
        expected=count,
        delivered=sink.count - before,
        window_mails=last - first,
        window_seconds=ended - started,
        cpu_seconds=cpu,
        peak_rss_bytes=peak_rss,
        sink_cpu_seconds=sink_cpu,
        processes=len(tree),
    )


def drain_timeout(count: int) -> float:
    return 60 + count / 20


def run_drains(
    bench: Bench, systems: tuple[System, ...], sink: smtp_sink.CountingSink, count: int, reps: int, part: str
) -> list[DrainRun]:
    """Every system once per repetition, interleaved, so that the machine's noise falls on each alike."""
    runs = []
    sink.start()
    try:
        for rep in range(1, reps + 1):
            for system in systems:
                run = drain(bench, system, sink, count, drain_timeout(count))
                runs.append(run)
                progress(
                    f"{part} {rep}/{reps} {system.label}: {run.mails_per_second:,.0f} mails/s, "
                    f"{run.cpu_ms_per_mail:.2f} ms CPU per mail, {run.cores:.2f} cores, "
                    f"{run.delivered}/{run.expected} delivered" + (f", {run.parked} parked" if run.parked else "")
                )
    finally:
        sink.stop()
    return runs


def progress(line: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    messages: int
    reps: int
    confirm_users: int
    wrong_codes: int
    tls_messages: int
    tls_delay_ms: float
    parts: tuple[str, ...]
    json_path: Path | None
    signup: auth_peers.SignupOptions = field(default_factory=auth_peers.SignupOptions)


def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="pre-queued messages per drain (2000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every measurement (3)")
    parser.add_argument("--confirm-users", type=int, default=100, help="pre-registered users for confirm (100)")
    parser.add_argument("--wrong-codes", type=int, default=2, help="wrong codes each user submits first (2)")
    parser.add_argument("--tls-messages", type=int, default=300, help="messages per drain into the TLS sink (300)")
    parser.add_argument("--tls-delay-ms", type=float, default=5.0, help="simulated delay per SMTP round trip (5)")
    parser.add_argument("--burst-seconds", type=float, default=20.0, help="sign-up: each system's burst (20)")
    parser.add_argument("--signup-users", type=int, default=50, help="sign-up: users timed one at a time (50)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 messages, 1 repetition, few users")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = parser.parse_args(argv)
    parts = tuple(part.strip() for part in args.parts.split(",") if part.strip())
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if args.wrong_codes < 0:
        parser.error("--wrong-codes must be at least 0")
    signup = auth_peers.SignupOptions(
        reps=args.reps, users=args.signup_users, wrong_codes=args.wrong_codes, burst_seconds=args.burst_seconds
    )
    if args.quick:
        args.messages, args.reps, args.confirm_users, args.tls_messages = 100, 1, 5, 20
        signup = auth_peers.SignupOptions.quick()
    if min(args.messages, args.reps, args.confirm_users, args.tls_messages, args.signup_users) < 1:
        parser.error("counts must be at least 1")
    if args.burst_seconds <= 0:
        parser.error("--burst-seconds must be above 0")
    return Options(
        messages=args.messages,
        reps=args.reps,
        confirm_users=args.confirm_users,
        wrong_codes=args.wrong_codes,
        tls_messages=args.tls_messages,
        tls_delay_ms=args.tls_delay_ms,
        parts=parts,
        json_path=args.json,
        signup=signup,
    )


def throughput_report(runs: list[DrainRun], options: Options) -> str:
    figures = group_runs(runs)
    project = median_rate(figures, PROJECT.label)
    one_process = median_rate(figures, PROJECT_ONE_PROCESS.label)
    return "\n".join(
        [
            f"### Worker throughput: {options.messages:,} pre-queued account-creation messages, "
            f"{options.reps} repetition(s), plain SMTP sink",
            "",
            throughput_table(figures),
            "",
            f"project 1 process / raw: {format_ratio(ratio(one_process, median_rate(figures, RAW.label)))}; "
            f"project (defaults) / Celery prefork: "
            f"{format_ratio(ratio(project, median_rate(figures, CELERY_PREFORK.label)))} (medians)",
        ]
    )


def confirm_report(outcomes: list[ConfirmOutcome], options: Options) -> str:
    runs = [outcome.run for outcome in outcomes]
    unexpected = sum(run.unexpected for run in runs)
    mib = 2**20
    return "\n".join(
        [
            f"### /auth/confirm: {options.confirm_users} users x ({options.wrong_codes} wrong + 1 right code), "
            f"{options.reps} repetition(s), one request at a time",
            "",
            latency_table(runs),
            "",
            f"confirm p50 / (healthz p50 + raw RPC p50): {format_ratio(confirm_ratio(runs, 0.5))}; "
            f"confirm p99 / (healthz p99 + raw RPC p99): {format_ratio(confirm_ratio(runs, 0.99))} (medians)",
            f"peak RSS: auth {max(o.auth_peak_rss_bytes for o in outcomes) / mib:.0f} MiB, "
            f"worker {max(o.worker_peak_rss_bytes for o in outcomes) / mib:.0f} MiB",
            f"confirms with an unexpected status: {unexpected}",
            f"MongoDB stand-in: {MONGO_STAND_IN}",
        ]
    )


def tls_report(runs: list[DrainRun], options: Options) -> str:
    figures = group_runs(runs)
    reuse_gain = ratio(median_rate(figures, RAW.label), median_rate(figures, RAW_NEW_CONNECTION.label))
    project_gain = ratio(median_rate(figures, PROJECT.label), median_rate(figures, PROJECT_NEW_CONNECTION.label))
    return "\n".join(
        [
            f"### STARTTLS sink with login, {options.tls_delay_ms:g} ms per SMTP round trip: "
            f"{options.tls_messages:,} messages, {options.reps} repetition(s)",
            "",
            throughput_table(figures),
            "",
            f"project kept connections / project new connection per mail: {format_ratio(project_gain)}; "
            f"raw kept connection / raw new connection per mail: {format_ratio(reuse_gain)} (medians)",
        ]
    )


def signup_report(
    runs: list[SignupRun], systems: list[auth_peers.SignupSystem], options: Options, confirm_ratio_p50: float | None
) -> str:
    names = [system.name for system in systems]
    described = "; ".join(
        f"{system.name}: {getattr(system, 'version', 'the auth service and worker on the indexed stand-in')}"
        for system in systems
    )
    signup = options.signup
    lines = [
        f"### Sign-up side by side: {signup.users} users one at a time ({signup.wrong_codes} wrong + 1 right code "
        f"each), then {signup.clients} clients registering for {signup.burst_seconds:g} s; "
        f"{signup.reps} repetition(s), the systems' order rotated",
        "",
        described,
        "",
        "#### The same cheap password hash for all (bcrypt, cost 4)",
        "",
        signup_table(runs, names, "cheap"),
        "",
        f"#### Each system's default password hash ({signup.default_users} users one at a time, "
        f"a {signup.default_burst_seconds:g} s burst)",
        "",
        signup_table(runs, names, "default"),
    ]
    figures = {name: medians(group) for name, group in by_system(runs, names, "cheap").items() if group}
    if auth_peers.Project.name in figures and len(figures) > 1:
        lines += ["", goal_lines(figures, confirm_ratio_p50)]
    return "\n".join(lines)


AUTH_RSS_GOAL_MIB = 90
WORKER_RSS_GOAL_MIB = 60


def goal_lines(figures: dict[str, dict[str, float | None]], confirm_ratio_p50: float | None) -> str:
    """Each goal of the comparison with the figure it is read from (medians of the cheap-hash part)."""
    ours = figures[auth_peers.Project.name]
    peers = {name: values for name, values in figures.items() if name != auth_peers.Project.name}

    def best(key: str) -> float | None:
        values = [value for figures in peers.values() if (value := figures[key]) is not None]
        return min(values) if values else None

    def at_most(key: str) -> str:
        mine, theirs = ours[key], best(key)
        ok = None if mine is None or theirs is None else mine <= theirs
        return f"{_ms(mine)} vs {_ms(theirs)} ms: {held(ok)}"

    rows = [
        f"- confirm right p50 / p99 at or below the fastest peer's: {at_most('right_p50')}; {at_most('right_p99')}",
        f"- confirm wrong p50 / p99 at or below the fastest peer's: {at_most('wrong_p50')}; {at_most('wrong_p99')}",
        f"- register -> code email p50 / p99 ahead of both peers: {at_most('register_p50')}; {at_most('register_p99')}",
        f"- confirm p50 / (healthz p50 + raw RPC p50) at most 1.5 (confirm part): {format_ratio(confirm_ratio_p50)}: "
        f"{held(None if confirm_ratio_p50 is None else confirm_ratio_p50 <= 1.5)}",
    ]
    better_auth = figures.get(auth_peers.BetterAuth.name)
    if better_auth and better_auth["rate"] and ours["rate"] and ours["cpu_ms"] and better_auth["cpu_ms"]:
        total = ours["cpu_ms"] + (ours["infra_cpu_ms"] or 0)
        rows += [
            f"- sustained registrations/s at or above better-auth's: {ours['rate']:.0f} vs {better_auth['rate']:.0f}: "
            f"{held(ours['rate'] >= better_auth['rate'])}",
            f"- CPU per registration (with RabbitMQ and Redis) at most 1.2 x better-auth's: {total:.2f} vs "
            f"{better_auth['cpu_ms']:.2f} ms, {total / better_auth['cpu_ms']:.2f} x: "
            f"{held(total <= 1.2 * better_auth['cpu_ms'])}",
        ]
        stand_in = ours.get("stand_in_cpu_ms")
        if stand_in is not None:
            # A lower bound: pymongo's own work for the same commands would stay in auth.
            without = total - stand_in
            rows.append(
                f"- the same without the MongoDB stand-in's CPU ({stand_in:.2f} ms of auth's, which a real MongoDB "
                f"spends in its own process): {without:.2f} vs {better_auth['cpu_ms']:.2f} ms, "
                f"{without / better_auth['cpu_ms']:.2f} x: {held(without <= 1.2 * better_auth['cpu_ms'])}"
            )
    rows += rss_goal_lines(ours)
    return "Goals (medians):\n" + "\n".join(rows)


def rss_goal_lines(ours: dict[str, float | None]) -> list[str]:
    """The resident-size goals, read after the cheap-hash run: auth's with and without what its in-process
    MongoDB stand-in holds (the documents and indexes a real MongoDB keeps in its own process), and the
    largest worker process's."""
    rows = []
    auth, stand_in, worker = ours.get("auth_rss_mib"), ours.get("stand_in_mib"), ours.get("worker_rss_mib")
    without = ours.get("auth_rss_without_stand_in_mib")
    if auth is not None:
        line = f"- auth's RSS after the run at most {AUTH_RSS_GOAL_MIB} MiB: {auth:.1f} MiB: "
        line += held(auth <= AUTH_RSS_GOAL_MIB)
        if stand_in is not None and without is not None:
            line += (
                f"; without the MongoDB stand-in's documents and indexes ({stand_in:.1f} MiB): {without:.1f} MiB: "
                f"{held(without <= AUTH_RSS_GOAL_MIB)}"
            )
        rows.append(line)
    if worker is not None:
        rows.append(
            f"- each worker process's RSS after the run at most {WORKER_RSS_GOAL_MIB} MiB: the largest {worker:.1f} "
            f"MiB: {held(worker <= WORKER_RSS_GOAL_MIB)}"
        )
    return rows


def held(ok: bool | None) -> str:
    """A goal's verdict as the report prints it; ``None`` when a figure it needs is missing."""
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def run(options: Options, bench: Bench) -> tuple[list[str], dict]:
    reports, results = [], {}
    confirm_ratio_p50 = None
    if "throughput" in options.parts:
        sink = smtp_sink.CountingSink()
        runs = run_drains(bench, THROUGHPUT_SYSTEMS, sink, options.messages, options.reps, "throughput")
        reports.append(throughput_report(runs, options))
        results["throughput"] = [dataclasses.asdict(run) for run in runs]
    if "confirm" in options.parts:
        outcomes = []
        for rep in range(1, options.reps + 1):
            outcome = measure_confirm(
                bench.settings,
                options.confirm_users,
                options.wrong_codes,
                bench.log_dir / f"confirm{rep}",
                bench.leftovers,
            )
            outcomes.append(outcome)
            progress(f"confirm {rep}/{options.reps}: {len(outcome.run.confirm)} confirms")
        reports.append(confirm_report(outcomes, options))
        confirm_ratio_p50 = confirm_ratio([outcome.run for outcome in outcomes], 0.5)
        results["confirm"] = [dataclasses.asdict(outcome) for outcome in outcomes]
    if "tls" in options.parts:
        tls = smtp_sink.self_signed_certificate(bench.log_dir)
        sink = smtp_sink.CountingSink(tls, delay_seconds=options.tls_delay_ms / 1000)
        runs = run_drains(bench, TLS_SYSTEMS, sink, options.tls_messages, options.reps, "tls")
        reports.append(tls_report(runs, options))
        results["tls"] = [dataclasses.asdict(run) for run in runs]
    if "signup" in options.parts:
        systems = auth_peers.available(
            [auth_peers.Project(bench.settings, bench.leftovers), auth_peers.Allauth(), auth_peers.BetterAuth()],
            progress,
        )
        signup_runs = auth_peers.measure(systems, options.signup, bench.log_dir, progress)
        reports.append(signup_report(signup_runs, systems, options, confirm_ratio_p50))
        results["signup"] = [dataclasses.asdict(run) for run in signup_runs]
    return reports, results


def heading(bench: Bench, started: datetime, load_before: tuple[float, ...]) -> str:
    load_after = os.getloadavg()
    rabbitmq, redis_server = urlsplit(bench.rabbitmq_url), urlsplit(bench.redis_url)
    return (
        f"Run {started:%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}: {os.cpu_count()} cores, "
        f"load average {load_before[0]:.2f} before and {load_after[0]:.2f} after "
        "(a shared machine: the figures are noisy); "
        f"RabbitMQ at {rabbitmq.hostname}:{rabbitmq.port or 5672}, "
        f"Redis at {redis_server.hostname}:{redis_server.port or 6379}."
    )


def _interrupt(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C, through every finally that stops processes and removes queues.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    bench = Bench(bench_settings(), Path(tempfile.mkdtemp(prefix="bench-compare-")))
    problems = preflight(bench.rabbitmq_url, bench.redis_url)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    if "throughput" in options.parts:
        try:
            import celery  # noqa: F401
        except ImportError:
            print("Celery is missing: run `make bench`, which installs requirements/bench.txt.", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _interrupt)
    started, load_before = datetime.now(UTC), os.getloadavg()
    progress(f"logs of every process in {bench.log_dir}")
    try:
        reports, results = run(options, bench)
    except KeyboardInterrupt:
        progress("interrupted: stopping what was started and removing its queues")
        return 130
    finally:
        bench.remove_leftovers()
    print("\n\n".join([heading(bench, started, load_before), *reports]))
    if options.json_path is not None:
        options.json_path.write_text(json.dumps({"started": started.isoformat(), **results}, indent=2))
    drains_complete = all(
        run["delivered"] == run["expected"] and not run["parked"]
        for part in ("throughput", "tls")
        for run in results.get(part, [])
    )
    confirms_as_expected = all(outcome["run"]["unexpected"] == 0 for outcome in results.get("confirm", []))
    signups_as_expected = all(
        run["unexpected"] == 0 and run["mailed"] >= run["registrations"] for run in results.get("signup", [])
    )
    return 0 if drains_complete and confirms_as_expected and signups_as_expected else 1


if __name__ == "__main__":
    sys.exit(main())
