"""The system on this machine: the two services as real processes plus a mail sink.

``make run``, ``make demo`` and the integration tests all start the system
through ``LocalStack``, so what the tests prove is what a developer runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pika
import redis
from dotenv import dotenv_values

from common.messaging import topology
from common.messaging.connection import parameters
from devtools.mailsink import MailSink, free_ports

ROOT = Path(__file__).resolve().parent.parent


def environment() -> dict[str, str]:
    """The process environment over ``.env``: what the services started from here would read."""
    from_file = {name: value for name, value in dotenv_values(".env").items() if value is not None}
    return {**from_file, **os.environ}


def unique_names(prefix: str = "run") -> dict[str, str]:
    """Queue names and key prefixes of one's own, so copies of the system share servers safely."""
    return names_for(f"{prefix}-{uuid.uuid4().hex[:10]}")


def names_for(tag: str) -> dict[str, str]:
    """The queue names and key prefixes of the run tagged ``tag`` (what ``unique_names`` hands out)."""
    return {
        "ACCOUNT_CREATION_QUEUE": f"{tag}.account_creation",
        "CONFIRM_EMAIL_CODE_QUEUE": f"{tag}.confirm_email_code",
        "ACCOUNT_CONFIRMED_QUEUE": f"{tag}.account_confirmed",
        "ACCOUNT_NOTIFICATIONS_QUEUE": f"{tag}.account_notifications",
        "WEBHOOKS_QUEUE": f"{tag}.webhooks",
        # An events exchange per run: a run's worker mails about its own users' events only.
        "ACCOUNT_EVENTS_EXCHANGE": f"{tag}.account.events",
        "REDIS_KEY_PREFIX": f"{tag}:email",
        "RATELIMIT_KEY_PREFIX": f"{tag}:ratelimit",
    }


def preflight(rabbitmq_url: str, redis_url: str) -> list[str]:
    """What is not answering, each with how to start it."""
    problems = []
    try:
        params = pika.URLParameters(rabbitmq_url)
        params.socket_timeout = 3
        params.connection_attempts = 1
        pika.BlockingConnection(params).close()
    except Exception as error:
        problems.append(
            f"RabbitMQ does not answer at {_without_password(rabbitmq_url)} ({type(error).__name__}).\n"
            "    Start it with:  rabbitmq-server -detached   (or run the whole stack with: make up)"
        )
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as error:
        problems.append(
            f"Redis does not answer at {redis_url} ({type(error).__name__}).\n"
            '    Start it with:  redis-server --daemonize yes --port 6379 --save "" --appendonly no'
        )
    return problems


def _without_password(url: str) -> str:
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':')[0]}:***@{host}"


def http_json(
    method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON body) using only the standard library."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, response_headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, response_headers, raw = error.code, dict(error.headers), error.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, response_headers, parsed


def http_form(url: str, fields: dict[str, str], timeout: float = 30) -> tuple[int, dict, str]:
    """POST an HTML form (application/x-www-form-urlencoded); (status, headers, page text)."""
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def delete_queues(
    rabbitmq_url: str,
    work_queues: list[str],
    retry_delays: tuple[int, ...] = topology.RETRY_DELAYS_SECONDS,
    exchanges: list[str] | None = None,
    webhook_schedule: tuple[int, ...] = topology.WEBHOOK_RETRY_SCHEDULE,
) -> None:
    """Remove a run's private queues (each work queue with its retry, dead-letter and delay queues, and
    the retry queues of the webhook schedule, which the webhooks queue has), and its private exchanges
    if named. Deleting one that does not exist is no error."""
    connection = pika.BlockingConnection(parameters(rabbitmq_url, "devtools"))
    try:
        channel = connection.channel()
        for name in work_queues:
            queue = topology.WorkQueue(name, retry_delays)
            webhook_retries = topology.WorkQueue(name, webhook_schedule).retry_queues
            parked = [queue.dead_letter_queue, *queue.retry_queues, queue.delay_queue, queue.long_delay_queue]
            for queue_name in dict.fromkeys([queue.name, *parked, *webhook_retries]):
                channel.queue_delete(queue_name)
        for exchange in exchanges or []:
            channel.exchange_delete(exchange)
    finally:
        connection.close()


def delete_run(
    rabbitmq_url: str,
    names: dict[str, str],
    retry_delays: tuple[int, ...] | None = None,
    webhook_schedule: tuple[int, ...] | None = None,
    redis_url: str | None = None,
) -> None:
    """Remove what a run named by ``unique_names`` declared on the broker (its queues and its events exchange)
    and, given ``redis_url``, the keys it wrote under its prefixes: the worker's (some without an expiry,
    such as the code key it keeps) and the rate limiter's."""
    delete_queues(
        rabbitmq_url,
        [value for key, value in names.items() if key.endswith("_QUEUE")],
        retry_delays or topology.RETRY_DELAYS_SECONDS,
        exchanges=[names["ACCOUNT_EVENTS_EXCHANGE"]] if "ACCOUNT_EVENTS_EXCHANGE" in names else [],
        webhook_schedule=webhook_schedule or topology.WEBHOOK_RETRY_SCHEDULE,
    )
    if redis_url is not None:
        delete_keys(redis_url, names)


def delete_keys(redis_url: str, names: dict[str, str]) -> None:
    """Every Redis key of a run named by ``unique_names``: under its worker prefix, and its rate limiter's
    (flask-limiter puts its own prefix before the run's)."""
    client = redis.Redis.from_url(redis_url)
    try:
        patterns = [f"{names['REDIS_KEY_PREFIX']}:*"] if "REDIS_KEY_PREFIX" in names else []
        if "RATELIMIT_KEY_PREFIX" in names:
            patterns.append(f"*{names['RATELIMIT_KEY_PREFIX']}*")
        for pattern in patterns:
            for key in client.scan_iter(match=pattern):
                client.delete(key)
    finally:
        client.close()


class Service:
    """One service as a child process (``python -m module args...``), its output in a log file.

    ``env`` is shared with the stack (which fills in ports as it starts);
    ``overrides`` are this service's own, such as its broker account."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        log_path: Path,
        overrides: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ):
        self.module = module
        self.env = env
        self.overrides = overrides or {}
        self.log_path = log_path
        self.args = args
        self.process: subprocess.Popen | None = None

    @property
    def started(self) -> subprocess.Popen:
        """The child process; only once ``start`` ran."""
        if self.process is None:
            raise RuntimeError(f"{self.module} was not started")
        return self.process

    def start(self) -> Service:
        env = {**self.env, **self.overrides}
        if self.module == "auth_service" and not self.args and not env.get("MONGO_URI", "").startswith("mongomock:"):
            # As compose does: the database's indexes and migrations once, before the service.
            with open(self.log_path, "ab") as log:
                subprocess.run(
                    [sys.executable, "-m", "auth_service", "migrate"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=60,
                )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                cwd=ROOT,
                env={**self.env, **self.overrides},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def exit_code(self) -> int | None:
        """The exit code once the process has ended; None while it runs or before it starts."""
        return self.process.poll() if self.process is not None else None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class LocalStack:
    """Mail sink in this process; auth and worker as children, on private queues and ports."""

    def __init__(
        self,
        log_dir: Path,
        overrides: dict[str, str] | None = None,
        echo_mail: bool = False,
        auth_port: int | None = None,
        smtp_port: int = 0,
        auth_overrides: dict[str, str] | None = None,
        worker_overrides: dict[str, str] | None = None,
    ):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.sink = MailSink(port=smtp_port, echo=echo_mail)
        # Below the kernel's ephemeral range, as free_ports draws them: a port the kernel handed out (bind to
        # 0) and released can go to the next outgoing connection, such as the worker's to the broker, which
        # starts before auth binds it.
        self.auth_port = auth_port or free_ports(1)
        self.admin_port = free_ports(1, taken={self.auth_port})
        metrics_port = free_ports(os.cpu_count() or 1, taken={self.auth_port, self.admin_port})
        self.env = {
            **os.environ,
            "APP_ENV": "development",
            "MONGO_URI": "mongomock://",
            "AUTH_HOST": "127.0.0.1",
            "AUTH_PORT": str(self.auth_port),
            # Another auth process of the stack (a replica a test starts) gets an admin port the system picks;
            # the stack's own auth process listens on ``admin_port``.
            "ADMIN_PORT": "0",
            "WORKER_METRICS_HOST": "127.0.0.1",
            # One port for each of the worker's processes (WORKER_PROCESSES, one per CPU by default).
            "WORKER_METRICS_PORT": str(metrics_port),
            "SMTP_HOST": "127.0.0.1",
            # The links in emails point at this stack's own auth service.
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.auth_port}",
            "PYTHONUNBUFFERED": "1",
            **(overrides or {}),
        }
        own_ports = {"ADMIN_PORT": str(self.admin_port), **(auth_overrides or {})}
        self.auth = Service("auth_service", self.env, log_dir / "auth.log", own_ports)
        self.worker = Service("email_service", self.env, log_dir / "worker.log", worker_overrides)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.auth_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def admin_call(self, method: str, path: str, key: str | None, body: dict | None = None):
        """A request to the admin API with ``key`` as its Bearer admin key (None: no key)."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else None
        return http_json(method, f"{self.admin_url}{path}", body, headers)

    @property
    def worker_status_url(self) -> str:
        """Where the worker's first process serves /metrics, /healthz and /readyz (a private port, so
        runs never collide)."""
        return f"http://127.0.0.1:{self.env['WORKER_METRICS_PORT']}"

    @property
    def worker_status_urls(self) -> list[str]:
        """Those of each of the worker's processes (``WORKER_PROCESSES``, one per CPU by default), on
        consecutive ports: a count the worker keeps is the sum over them."""
        overrides = {**self.env, **self.worker.overrides}
        processes = int(overrides.get("WORKER_PROCESSES") or os.cpu_count() or 1)
        port = int(self.env["WORKER_METRICS_PORT"])
        return [f"http://127.0.0.1:{port + index}" for index in range(processes)]

    def start(self, ready_timeout: float = 30.0, worker: bool = True) -> LocalStack:
        """Start the stack; ``worker=False`` leaves the email worker out, as when it is down."""
        self.sink.start()
        self.env["SMTP_PORT"] = str(self.sink.port)
        if worker:
            self.worker.start()
        self.auth.start()
        try:
            self.wait_ready(ready_timeout, worker=worker)
        except BaseException:
            self.stop()  # a stack that never came up must not leave its processes behind
            raise
        return self

    def wait_ready(self, timeout: float = 30.0, worker: bool = True) -> None:
        """Until both answer /readyz: the worker too (each of its processes: a test may read any one's
        /metrics), since only it binds the queues auth publishes to."""
        deadline = time.monotonic() + timeout
        probes = [(self.auth, f"{self.base_url}/readyz")]
        if worker and self.env.get("WORKER_METRICS_PORT", "0") != "0":
            probes += [(self.worker, f"{url}/readyz") for url in self.worker_status_urls]
        for service, url in probes:
            last = None
            while True:
                exited = service.exit_code()
                if exited is not None:
                    raise RuntimeError(f"{service.module} exited ({exited}):\n{service.log_text()[-3000:]}")
                try:
                    last = http_json("GET", url, timeout=2)
                    if last[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{service.module} not ready after {timeout}s: {last}")
                time.sleep(0.1)

    def stop(self) -> dict[str, int | None]:
        codes = {"auth": self.auth.stop(), "worker": self.worker.stop()}
        self.sink.stop()
        return codes

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        return http_json(method, f"{self.base_url}{path}", body, headers)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
