"""Sign-up side by side: the project against the auth services people would pick instead.

Three systems, each as it is deployed, on one SMTP sink (bench/code_sink.py):

- this project: the auth service (``python -m auth_service`` on the indexed
  MongoDB stand-in, bench/indexed_mongo.py) and the email worker
  (``python -m email_service``, defaults) on this machine's RabbitMQ and Redis;
- django-allauth, headless, email verification by code, on waitress and SQLite
  (bench/allauth_peer/);
- better-auth with its emailOTP plugin on Node's http server and SQLite
  (bench/peers/better_auth/server.mjs).

Per repetition (the order of the systems rotates), each system is started
fresh with the same cheap password hash (bcrypt cost 4), then:

1. latency, one request at a time on one kept connection: register a user and
   wait for its code mail at the sink (register -> code email); then each user
   submits ``wrong_codes`` wrong codes and the right one (confirm, wrong and
   right code);
2. a burst: ``clients`` threads, each on its own kept connection, register new
   users for ``burst_seconds``; registrations/s over the window (and per
   slice of it), and the CPU time of the system's server processes from the
   burst's start until the sink has every mail, over the registrations (for
   the project also RabbitMQ's and Redis's CPU in the same time: whole
   servers, shared with whatever else runs on this machine);
3. the resident size of each server process after the burst.

Then the same system is started again with its own default password hash for
a shorter, second reported part (latency and burst, no confirms).

Everything a system created is removed when it stops: its queues and Redis
keys (the project), its temporary folder and SQLite database (the peers). A
peer that cannot run here (Node.js missing, its packages not installed, the
native SQLite module not built, Django not installed) is skipped with the
reason printed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from bench.code_sink import CodeSink
from bench.confirm_latency import CODE_PATTERN, ProjectStack
from bench.indexed_mongo import REPORT_ENV as STAND_IN_REPORT_ENV
from bench.processes import cpu_seconds, process_tree
from bench.signup_stats import SignupRun, code_in, rotated, slice_rates, wrong_code
from bench.workload import RUN_PREFIX, Leftovers
from devtools.mailsink import free_port
from devtools.stack import ROOT, unique_names

PASSWORD = "correct horse battery staple"  # noqa: S105 (benchmark accounts)
BETTER_AUTH_DIR = ROOT / "bench" / "peers" / "better_auth"
WARM_UP_USERS = 5
SLICE_SECONDS = 5.0
MAIL_WAIT_SECONDS = 30.0
IDLE_SAMPLE_SECONDS = 3.0
STAND_IN_REPORT = "stand-in.json"
START_ATTEMPTS = 3
DIGITS = "0123456789"
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "redis": 6379, "rediss": 6379}
ALLAUTH_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # allauth's user codes (allauth.core.internal.cryptokit)


@dataclass(frozen=True)
class SignupOptions:
    reps: int = 3
    users: int = 50
    wrong_codes: int = 2
    clients: int = 8
    burst_seconds: float = 20.0
    default_users: int = 10
    default_burst_seconds: float = 10.0

    @classmethod
    def quick(cls) -> SignupOptions:
        return cls(reps=1, users=10, burst_seconds=5.0, default_users=3, default_burst_seconds=3.0)


class Client:
    """One HTTP/1.1 connection kept for every request (opened again if the server closed it)."""

    def __init__(self, port: int):
        self._port = port
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        payload = json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self._connection.request(
                    "POST", path, body=payload, headers={"Content-Type": "application/json", **(headers or {})}
                )
                response = self._connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> int:
        self._connection.request("GET", path)
        response = self._connection.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self._connection.close()


@dataclass
class Started:
    """A running system: its port, its server processes by label, and how to stop it and remove what it made."""

    port: int
    processes: Callable[[], dict[str, psutil.Process]]
    stop: Callable[[], None]
    infra_urls: tuple[str, ...] = ()  # the RabbitMQ and Redis whose CPU counts too
    # The project's: what its in-process MongoDB stand-in holds ({"documents", "bytes", "cpu_seconds"}), or None.
    stand_in: Callable[[], dict[str, float] | None] | None = None
    # The project's: the CPU seconds auth spent inside the stand-in so far, or None.
    stand_in_cpu: Callable[[], float | None] | None = None


class SignupSystem:
    name: str
    code_pattern: re.Pattern[str]
    alphabet: str
    registered_status: int
    confirm_path: str

    def unavailable(self) -> str | None:
        """Why this system cannot run on this machine, or None."""
        return None

    def start(self, smtp_port: int, cheap_hash: bool, log_dir: Path) -> Started:
        raise NotImplementedError

    def register(self, client: Client, address: str) -> tuple[int, str | None]:
        """(status, what the confirm needs besides the address and code)."""
        raise NotImplementedError

    def confirm(self, client: Client, address: str, state: str | None, code: str) -> int:
        raise NotImplementedError


def _wait_healthy(port: int, path: str, exited: Callable[[], str | None], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reason = exited()
        if reason is not None:
            raise RuntimeError(reason)
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                connection.close()
                return
            connection.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answered 200 at 127.0.0.1:{port}{path} within {timeout:.0f}s")
        time.sleep(0.1)


class _Child:
    """A peer's server as a child process, its output in a log file."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log_path: Path):
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.log_path = log_path

    def exited(self) -> str | None:
        if self.process.poll() is None:
            return None
        text = self.log_path.read_text(errors="replace")[-3000:]
        return f"exited with {self.process.returncode}:\n{text}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _start_peer(
    label: str,
    command: Callable[[Path, int], tuple[list[str], Path, dict[str, str]]],
    smtp_port: int,
    cheap_hash: bool,
    log_path: Path,
) -> Started:
    """A peer's server on a port and in a temporary folder of its own (its database), answering /healthz;
    stopping it removes the folder."""
    folder = Path(tempfile.mkdtemp(prefix="bench-signup-peer-"))
    port = free_port()
    arguments, cwd, own = command(folder, port)
    env = {
        **os.environ,
        "PORT": str(port),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "BENCH_HASH": "cheap" if cheap_hash else "default",
        **own,
    }
    child = _Child(arguments, cwd, env, log_path)

    def stop() -> None:
        try:
            child.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    try:
        _wait_healthy(port, "/healthz", child.exited)
    except BaseException:
        stop()
        raise
    return Started(port, lambda: {label: psutil.Process(child.process.pid)}, stop)


class Project(SignupSystem):
    name = "this project"
    code_pattern = CODE_PATTERN
    alphabet = DIGITS
    registered_status = 201
    confirm_path = "/auth/confirm"

    def __init__(self, settings: dict[str, str], leftovers: list[Leftovers]):
        self._settings = settings
        self._leftovers = leftovers

    def start(self, smtp_port: int, cheap_hash: bool, log_dir: Path) -> Started:
        names = unique_names(RUN_PREFIX)
        mine = Leftovers(self._settings["RABBITMQ_URL"], self._settings["REDIS_URL"])
        mine.add_names(names)
        self._leftovers.append(mine)
        overrides = {
            **self._settings,
            **names,
            "RATELIMIT_ENABLED": "false",
            "RATELIMIT_STORAGE_URI": self._settings["REDIS_URL"],
            STAND_IN_REPORT_ENV: str(log_dir / STAND_IN_REPORT),
        }
        if cheap_hash:
            overrides["BCRYPT_ROUNDS"] = "4"
        else:
            overrides.pop("ALLOW_WEAK_BCRYPT", None)
        stack = ProjectStack(log_dir, overrides, smtp_port)
        try:
            stack.start()
        except BaseException:
            mine.remove()
            raise

        def processes() -> dict[str, psutil.Process]:
            found = {"auth": psutil.Process(stack.auth.started.pid)}
            supervisor, *workers = process_tree(stack.worker.started.pid)
            found["worker supervisor" if workers else "worker"] = supervisor
            for index, worker in enumerate(workers, 1):
                found[f"worker {index}"] = worker
            return found

        def stop() -> None:
            try:
                stack.stop()
            finally:
                mine.remove()

        def stand_in() -> dict[str, float] | None:
            return ask_stand_in(stack.auth.started.pid, log_dir / STAND_IN_REPORT, signal.SIGUSR1)

        def stand_in_cpu() -> float | None:
            figures = ask_stand_in(stack.auth.started.pid, log_dir / STAND_IN_REPORT, signal.SIGUSR2)
            return None if figures is None else figures["cpu_seconds"]

        infra = (self._settings["RABBITMQ_URL"], self._settings["REDIS_URL"])
        return Started(stack.auth_port, processes, stop, infra_urls=infra, stand_in=stand_in, stand_in_cpu=stand_in_cpu)

    def register(self, client: Client, address: str) -> tuple[int, str | None]:
        return client.post("/auth/register", {"email": address, "password": PASSWORD})[0], None

    def confirm(self, client: Client, address: str, state: str | None, code: str) -> int:
        return client.post("/auth/confirm", {"email": address, "code": code})[0]


class Allauth(SignupSystem):
    name = "django-allauth"
    code_pattern = re.compile(r"\b[A-Z0-9]{4}-[A-Z0-9]{4}\b")
    alphabet = ALLAUTH_ALPHABET
    registered_status = 401  # signed up, the verify_email flow pending: headless answers 401 with the flows
    confirm_path = "/_allauth/app/v1/auth/email/verify"

    def unavailable(self) -> str | None:
        try:
            import allauth  # noqa: F401
            import django  # noqa: F401
        except ImportError as error:
            return f"{error.name} is not installed: `make bench` installs requirements/bench.txt"
        return None

    @property
    def version(self) -> str:
        import allauth
        import django

        return f"django-allauth {allauth.__version__} (Django {django.get_version()}, waitress, SQLite)"

    def start(self, smtp_port: int, cheap_hash: bool, log_dir: Path) -> Started:
        def command(folder: Path, port: int) -> tuple[list[str], Path, dict[str, str]]:
            env = {
                "PYTHONPATH": str(ROOT),
                "ALLAUTH_DATABASE": str(folder / "db.sqlite3"),
                "DJANGO_SECRET_KEY": f"benchmark-only-{uuid.uuid4().hex}",
            }
            return [sys.executable, "-m", "bench.allauth_peer"], ROOT, env

        return _start_peer("allauth (waitress)", command, smtp_port, cheap_hash, log_dir / "allauth.log")

    def register(self, client: Client, address: str) -> tuple[int, str | None]:
        status, body = client.post("/_allauth/app/v1/auth/signup", {"email": address, "password": PASSWORD})
        token = json.loads(body).get("meta", {}).get("session_token") if status == self.registered_status else None
        return status, token

    def confirm(self, client: Client, address: str, state: str | None, code: str) -> int:
        return client.post(self.confirm_path, {"key": code}, {"X-Session-Token": state or ""})[0]


class BetterAuth(SignupSystem):
    name = "better-auth"
    code_pattern = CODE_PATTERN
    alphabet = DIGITS
    registered_status = 200
    confirm_path = "/api/auth/email-otp/verify-email"

    def unavailable(self) -> str | None:
        node = shutil.which("node")
        if node is None:
            return "Node.js is not installed (Debian: apt-get install nodejs npm)"
        version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if int(version.lstrip("v").split(".")[0] or 0) < 20:
            return f"better-auth needs Node.js 20 or later, this machine has {version}"
        if not (BETTER_AUTH_DIR / "node_modules" / "better-auth").is_dir():
            return f"its packages are not installed: `make bench` runs npm ci in {BETTER_AUTH_DIR.relative_to(ROOT)}"
        loads = subprocess.run(
            [node, "-e", "new (require('better-sqlite3'))(':memory:').close()"],
            cwd=BETTER_AUTH_DIR,
            capture_output=True,
            text=True,
        )
        if loads.returncode != 0:
            last = (loads.stderr.strip().splitlines() or ["no output"])[-1]
            return f"better-sqlite3's native module does not load (its build needs make and g++): {last}"
        return None

    @property
    def version(self) -> str:
        package = json.loads((BETTER_AUTH_DIR / "node_modules" / "better-auth" / "package.json").read_text())
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        return f"better-auth {package['version']} (Node {node}, emailOTP, better-sqlite3)"

    def start(self, smtp_port: int, cheap_hash: bool, log_dir: Path) -> Started:
        def command(folder: Path, port: int) -> tuple[list[str], Path, dict[str, str]]:
            env = {
                "NODE_ENV": "production",
                "DATABASE_PATH": str(folder / "auth.sqlite"),
                "BETTER_AUTH_SECRET": f"benchmark-only-{uuid.uuid4().hex}",
            }
            # BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=DIR": to profile it under the benchmark's load.
            return ["node", *shlex.split(os.environ.get("BENCH_NODE_ARGS", "")), "server.mjs"], BETTER_AUTH_DIR, env

        return _start_peer("better-auth (node)", command, smtp_port, cheap_hash, log_dir / "better-auth.log")

    def register(self, client: Client, address: str) -> tuple[int, str | None]:
        body = {"email": address, "password": PASSWORD, "name": address.split("@")[0]}
        return client.post("/api/auth/sign-up/email", body)[0], None

    def confirm(self, client: Client, address: str, state: str | None, code: str) -> int:
        return client.post(self.confirm_path, {"email": address, "otp": code})[0]


def infra_processes(urls: Sequence[str]) -> list[psutil.Process]:
    """The processes listening on the ports of ``urls`` (the RabbitMQ and Redis the project uses), not
    every broker on the machine: test suites start private clusters of their own."""
    ports = {urlsplit(url).port or DEFAULT_PORTS[urlsplit(url).scheme] for url in urls}
    pids = {
        connection.pid
        for connection in psutil.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port in ports and connection.pid
    }
    return [psutil.Process(pid) for pid in sorted(pids)]


def idle_cpu_per_second(processes: Sequence[psutil.Process], seconds: float = IDLE_SAMPLE_SECONDS) -> float:
    before = cpu_by_pid(processes)
    time.sleep(seconds)
    return cpu_change(processes, before) / seconds


def cpu_change(processes: Sequence[psutil.Process], before: dict[int, float]) -> float:
    """CPU seconds the processes used since ``before`` (from ``cpu_by_pid``), over those still running."""
    after = cpu_by_pid(processes)
    return sum(after[pid] - before[pid] for pid in after.keys() & before.keys())


def cpu_by_pid(processes: Sequence[psutil.Process]) -> dict[int, float]:
    return {process.pid: cpu_seconds([process]) for process in processes if process.is_running()}


@dataclass
class _Latency:
    register_to_mail: list[float] = field(default_factory=list)
    right: list[float] = field(default_factory=list)
    wrong: list[float] = field(default_factory=list)
    unexpected: int = 0


def _await_mail(sink: CodeSink, address: str, timeout: float = MAIL_WAIT_SECONDS) -> tuple[float, bytes] | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        arrival = sink.next_arrival(left)
        if arrival is not None and arrival.recipient == address.lower():
            return arrival.at, arrival.raw
    return None


def measure_latency(
    system: SignupSystem, started: Started, sink: CodeSink, users: int, wrong_codes: int | None, tag: str
) -> _Latency:
    """Registrations, then (unless ``wrong_codes`` is None) each user's wrong codes and right one."""
    figures = _Latency()
    client = Client(started.port)
    sink.keep(True)
    try:
        pending = []
        for index in range(WARM_UP_USERS + users):
            address = f"s{index}.{tag}@example.com"
            sent = time.monotonic()
            status, state = system.register(client, address)
            if status != system.registered_status:
                figures.unexpected += 1
                continue
            arrived = _await_mail(sink, address)
            code = code_in(arrived[1], system.code_pattern) if arrived else None
            if arrived is None or code is None:
                figures.unexpected += 1
                continue
            if index >= WARM_UP_USERS:
                figures.register_to_mail.append(arrived[0] - sent)
            pending.append((index, address, state, code))
        if wrong_codes is not None:
            for index, address, state, code in pending:
                for submitted, expected, samples in [
                    *[(wrong_code(code, system.alphabet), 400, figures.wrong)] * wrong_codes,
                    (code, 200, figures.right),
                ]:
                    sent = time.monotonic()
                    status = system.confirm(client, address, state, submitted)
                    if index >= WARM_UP_USERS:
                        samples.append(time.monotonic() - sent)
                    figures.unexpected += status != expected
    finally:
        sink.keep(False)
        client.close()
    return figures


@dataclass
class _Burst:
    registrations: int
    window_seconds: float
    slices: list[float]
    cpu_seconds: float
    cpu_by_process: dict[str, float]
    infra_cpu_seconds: float
    mailed: int
    unexpected: int
    stand_in_cpu_seconds: float | None


def measure_burst(
    system: SignupSystem, started: Started, sink: CodeSink, clients: int, seconds: float, tag: str
) -> _Burst:
    completions: list[float] = []
    unexpected = [0]
    lock = threading.Lock()
    go = threading.Barrier(clients + 1)
    by_label = started.processes()
    servers = list(by_label.values())
    infra = infra_processes(started.infra_urls)
    window: dict[str, float] = {}

    def client_loop(number: int) -> None:
        client = Client(started.port)
        mine: list[float] = []
        failed = 0
        try:
            go.wait()
            index = 0
            while time.monotonic() < window["end"]:
                status, _ = system.register(client, f"b{number}-{index}.{tag}@example.com")
                index += 1
                if status == system.registered_status:
                    mine.append(time.monotonic())
                else:
                    failed += 1
        finally:
            client.close()
            with lock:
                completions.extend(mine)
                unexpected[0] += failed

    # What RabbitMQ and Redis spend with no registration going on (others' queues, the project's idle
    # polling), taken off their share below, so that share is what the registrations cost them.
    idle = idle_cpu_per_second(infra) if infra else 0.0
    threads = [threading.Thread(target=client_loop, args=(number,), daemon=True) for number in range(clients)]
    for thread in threads:
        thread.start()
    mails_before = sink.count
    stand_in_before = started.stand_in_cpu() if started.stand_in_cpu else None
    cpu_before, infra_before = cpu_seconds(servers), cpu_by_pid(infra)
    each_before = {label: cpu_seconds([process]) for label, process in by_label.items()}
    window["start"] = time.monotonic()
    window["end"] = window["start"] + seconds
    go.wait()
    for thread in threads:
        thread.join()
    ended = max([window["end"], *completions])
    # The work a registration causes ends with its mail: wait for the sink to have them all.
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while sink.count - mails_before < len(completions) and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu, infra_cpu = cpu_seconds(servers) - cpu_before, cpu_change(infra, infra_before)
    infra_cpu = max(0.0, infra_cpu - idle * (time.monotonic() - window["start"]))
    each = {label: cpu_seconds([process]) - each_before[label] for label, process in by_label.items()}
    stand_in_after = started.stand_in_cpu() if started.stand_in_cpu else None
    stand_in_cpu = None if stand_in_before is None or stand_in_after is None else stand_in_after - stand_in_before
    return _Burst(
        registrations=len(completions),
        window_seconds=ended - window["start"],
        slices=slice_rates(completions, window["start"], ended, SLICE_SECONDS),
        cpu_seconds=cpu,
        cpu_by_process=each,
        infra_cpu_seconds=infra_cpu,
        mailed=sink.count - mails_before,
        unexpected=unexpected[0],
        stand_in_cpu_seconds=stand_in_cpu,
    )


def ask_stand_in(pid: int, report: Path, signum: int, timeout: float = 30.0) -> dict[str, float] | None:
    """Ask the benchmark's auth process what its MongoDB stand-in holds and has spent (SIGUSR1), or has
    spent alone (SIGUSR2): bench/indexed_mongo.py."""
    report.unlink(missing_ok=True)
    os.kill(pid, signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if report.exists():
            return json.loads(report.read_text())
        time.sleep(0.05)
    return None


def resident_sizes(started: Started) -> dict[str, int]:
    sizes = {}
    for label, process in started.processes().items():
        try:
            sizes[label] = process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return sizes


def start_with_retries(system: SignupSystem, smtp_port: int, cheap_hash: bool, log_dir: Path) -> Started:
    """A started system; on a shared machine a free port can be taken between choosing and binding it,
    so a system that does not come up is started again on new ports (each try cleans up after itself)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        folder = log_dir / f"try{attempt}" if attempt > 1 else log_dir
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return system.start(smtp_port, cheap_hash, folder)
        except RuntimeError as error:
            if attempt == START_ATTEMPTS:
                raise
            print(f"{system.name} did not come up, trying new ports: {str(error).splitlines()[0]}", file=sys.stderr)
    raise AssertionError("unreachable")


def run_system(
    system: SignupSystem, sink: CodeSink, options: SignupOptions, cheap_hash: bool, log_dir: Path
) -> SignupRun:
    log_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    started = start_with_retries(system, sink.port, cheap_hash, log_dir)
    try:
        rss_start = resident_sizes(started)
        latency = measure_latency(
            system,
            started,
            sink,
            options.users if cheap_hash else options.default_users,
            options.wrong_codes if cheap_hash else None,
            tag,
        )
        burst = measure_burst(
            system,
            started,
            sink,
            options.clients,
            options.burst_seconds if cheap_hash else options.default_burst_seconds,
            tag,
        )
        rss = resident_sizes(started)
        stand_in = started.stand_in() if started.stand_in else None
    finally:
        started.stop()
    return SignupRun(
        system=system.name,
        hash="cheap" if cheap_hash else "default",
        register_to_mail=tuple(latency.register_to_mail),
        confirm_right=tuple(latency.right),
        confirm_wrong=tuple(latency.wrong),
        registrations=burst.registrations,
        window_seconds=burst.window_seconds,
        slice_rates=tuple(burst.slices),
        cpu_seconds=burst.cpu_seconds,
        cpu_by_process=burst.cpu_by_process,
        infra_cpu_seconds=burst.infra_cpu_seconds,
        mailed=burst.mailed,
        unexpected=latency.unexpected + burst.unexpected,
        rss_bytes=rss,
        rss_start_bytes=rss_start,
        stand_in=stand_in or {},
        stand_in_cpu_seconds=burst.stand_in_cpu_seconds,
    )


def available(systems: Sequence[SignupSystem], say: Callable[[str], None]) -> list[SignupSystem]:
    """The systems that can run here; each one that cannot is named with the reason."""
    kept = []
    for system in systems:
        reason = system.unavailable()
        if reason is None:
            kept.append(system)
        else:
            say(f"sign-up: {system.name} skipped: {reason}")
    return kept


def measure(
    systems: Sequence[SignupSystem],
    options: SignupOptions,
    log_dir: Path,
    say: Callable[[str], None],
    hashes: Sequence[bool] = (True, False),
) -> list[SignupRun]:
    runs = []
    by_name = {system.name: system for system in systems}
    sink = CodeSink().start()
    try:
        for rep in range(options.reps):
            for name in rotated(list(by_name), rep):
                for cheap_hash in hashes:
                    hash_label = "cheap" if cheap_hash else "default"
                    run = run_system(
                        by_name[name], sink, options, cheap_hash, log_dir / f"signup{rep + 1}-{hash_label}"
                    )
                    runs.append(run)
                    say(
                        f"sign-up {rep + 1}/{options.reps} {name} ({hash_label} hash): "
                        f"{run.rate:.0f} registrations/s, {run.cpu_ms:.2f} ms CPU each"
                        + (f" (+{run.infra_cpu_ms:.2f} RabbitMQ and Redis)" if run.infra_cpu_seconds else "")
                        + f", {run.mailed}/{run.registrations} mailed, {run.unexpected} unexpected"
                    )
    finally:
        sink.stop()
    return runs
