"""Mails per second through each road out (SMTP, Amazon SES, Postmark) against its local stand-in,
and what the transport interface costs the SMTP road (``make bench-mail``).

Each road is driven as the worker drives it: ``--threads`` consumer threads,
each rendering a verification email and handing it to the mailer, which hands
it to the road; each stand-in runs in a process of its own (the counting SMTP
sink, moto's server for SES v2, the Postmark stand-in), off the measuring
process's GIL. The SMTP road is measured three ways in the same run, their
rounds interleaved so that a busy machine weighs on each alike:

- ``smtp direct``: the mailer on the kept SMTP connections, as before the
  transport interface;
- ``smtp via failover``: the same connections behind ``FailoverTransport``
  (breaker bookkeeping under its lock), as the worker runs now;
- ``smtp via failover + suppression check``: plus the handler's check of the
  suppression list (the process's copy, which looks at the list's version in
  this machine's Redis at most once a second).

Nothing leaves the machine. Prints one JSON line per road and a summary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import redis

from bench import local_servers
from bench.sink import CountingSink
from devtools.mail_providers import FakePostmark
from devtools.mailsink import free_port
from email_service.adapters.mailer import SmtpConnections, SmtpMailer, Templates, Transport
from email_service.adapters.postmark import PostmarkTransport
from email_service.adapters.ses import SesTransport
from email_service.adapters.suppressions import RedisSuppressions
from email_service.delivery import FailoverTransport

SENDER = "no-reply@bench.example.com"
CONTEXT = {
    "code": "123456",
    "link_token": "t" * 43,
    "link": "https://auth.example.com/auth/verify?token=u-1.bench",
    "validity_seconds": 600,
    "registered_at": "2026-12-06 16:00 UTC",
    "locale": "en",
}


def drive(
    mailer: SmtpMailer, mails: int, threads: int, before_each: Callable[[str], object] | None = None
) -> tuple[float, float]:
    """(mails per second, CPU microseconds of this process per mail): ``threads`` threads share ``mails``
    sends. The CPU figure moves less than the rate on a machine others are using."""
    counter = iter(range(mails))
    lock = threading.Lock()
    run = uuid.uuid4().hex[:6]

    def work() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            to = f"bench-{run}-{index}@example.com"
            if before_each is not None:
                before_each(to)
            mailer.send("verify_email", to, CONTEXT)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started, cpu_started = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return mails / elapsed, cpu / mails * 1e6


class _NoRoad:
    name = "none"

    def deliver(self, mail: object) -> None:
        pass

    def close(self) -> None:
        pass


def overheads(suppressions: RedisSuppressions, calls: int = 20_000) -> dict[str, float]:
    """What the worker's SMTP path pays now per mail and did not before, each alone on one thread:
    the failover's bookkeeping over a road that does nothing, and the suppression check. Microseconds
    of wall time and of CPU per call."""
    failover = FailoverTransport([_NoRoad()], failures_to_open=5, cooldown_seconds=30)
    found = {}
    for name, call in (
        ("failover bookkeeping", lambda: failover.deliver(None)),  # type: ignore[arg-type]
        ("suppression check", lambda: suppressions.is_suppressed("someone@example.com")),
    ):
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(calls):
            call()
        found[f"{name}: wall us"] = round((time.perf_counter() - started) / calls * 1e6, 2)
        found[f"{name}: cpu us"] = round((time.process_time() - cpu_started) / calls * 1e6, 2)
    return found


def _serve_postmark(port_value, stop) -> None:
    fake = FakePostmark(token="bench-token")  # noqa: S106 (the stand-in's own)
    fake.start()
    port_value.value = int(fake.url.rsplit(":", 1)[1])
    stop.wait()
    fake.stop()


class PostmarkProcess:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._port = context.RawValue("i", 0)
        self._stop = context.Event()
        self._process = context.Process(target=_serve_postmark, args=(self._port, self._stop), daemon=True)

    def start(self) -> str:
        self._process.start()
        deadline = time.monotonic() + 30
        while self._port.value == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the Postmark stand-in did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self._port.value}"

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)


class MotoProcess:
    """moto's server (SES v2) in a process of its own, the sender's identity verified."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        import boto3

        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = boto3.client("ses", region_name="us-east-1", endpoint_url=self.url)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.verify_email_identity(EmailAddress=SENDER)
                return self.url
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=1000, help="mails per round")
    parser.add_argument("--reps", type=int, default=3, help="rounds of each")
    parser.add_argument("--threads", type=int, default=4, help="sending threads (WORKER_THREADS)")
    args = parser.parse_args(argv)
    servers = local_servers()
    if servers is None:
        return 2
    # moto takes any credentials; boto3 must find some, and must not ask an instance metadata service.
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_EC2_METADATA_DISABLED": "true"}
    )

    templates = Templates()
    sink = CountingSink().start()
    postmark = PostmarkProcess()
    moto = MotoProcess()
    client = redis.Redis.from_url(servers[1])
    prefix = f"bench-mail-{uuid.uuid4().hex[:8]}"
    suppressions = RedisSuppressions(client, prefix)
    try:
        postmark_url = postmark.start()
        ses_url = moto.start()

        def smtp() -> SmtpConnections:
            return SmtpConnections("127.0.0.1", sink.port, timeout=10, idle_seconds=30)

        def failover(road) -> FailoverTransport:
            return FailoverTransport([road], failures_to_open=5, cooldown_seconds=30)

        roads: dict[str, tuple[Callable[[], Transport], Callable[[str], object] | None]] = {
            "smtp direct": (smtp, None),
            "smtp via failover": (lambda: failover(smtp()), None),
            "smtp via failover + suppression check": (lambda: failover(smtp()), suppressions.is_suppressed),
            "ses (moto server)": (
                lambda: failover(SesTransport("us-east-1", ses_url, pool_size=args.threads * 2)),
                None,
            ),
            "postmark (stand-in)": (lambda: failover(PostmarkTransport(postmark_url, "bench-token")), None),
        }
        rates: dict[str, list[float]] = {name: [] for name in roads}
        cpu: dict[str, list[float]] = {name: [] for name in roads}
        # A warm-up round each: compiled templates, connections opened, moto's first-call imports.
        for rep in range(args.reps + 1):
            for name, (make, before_each) in roads.items():
                transport = make()
                mailer = SmtpMailer(SENDER, transport, templates)
                rate, cpu_per_mail = drive(mailer, args.mails if rep else 100, args.threads, before_each)
                mailer.close()
                if rep:
                    rates[name].append(rate)
                    cpu[name].append(cpu_per_mail)
        summary = {}
        cpu_summary = {}
        for name, measured in rates.items():
            line = {
                "road": name,
                "mails_per_round": args.mails,
                "threads": args.threads,
                "mails_per_second": [round(rate) for rate in measured],
                "median": round(statistics.median(measured)),
                "cpu_us_per_mail": [round(value) for value in cpu[name]],
                "cpu_us_per_mail_median": round(statistics.median(cpu[name])),
            }
            summary[name] = line["median"]
            cpu_summary[name] = line["cpu_us_per_mail_median"]
            print(json.dumps(line), flush=True)
        direct = summary["smtp direct"]
        print(
            json.dumps(
                {
                    "smtp via failover / direct": round(summary["smtp via failover"] / direct, 3),
                    "smtp via failover + suppression check / direct": round(
                        summary["smtp via failover + suppression check"] / direct, 3
                    ),
                    "cpu per mail, failover / direct": round(
                        cpu_summary["smtp via failover"] / cpu_summary["smtp direct"], 3
                    ),
                    "cpu per mail, failover + suppression check / direct": round(
                        cpu_summary["smtp via failover + suppression check"] / cpu_summary["smtp direct"], 3
                    ),
                    "sink counted": sink.count,
                }
            ),
            flush=True,
        )
        print(json.dumps({"per mail, alone": overheads(suppressions)}), flush=True)
        return 0
    finally:
        postmark.stop()
        moto.stop()
        sink.stop()
        client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
