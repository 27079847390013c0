"""A counting SMTP sink in a process of its own, optionally behind STARTTLS with a login
and a simulated network delay.

It accepts every mail, counts its recipients in shared memory and discards it,
so the systems measured pay for SMTP and the sink costs as little as it can.
Running it in another process keeps it off the measuring process's GIL, and
its own CPU time is reported beside the figures so a sink-bound run shows.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from devtools.mailsink import free_port

SINK_HOSTNAME = "bench-sink"  # given, so that aiosmtpd does not resolve the host name per connection
LOGIN = "bench"
PASSWORD = "bench-sink-password"  # noqa: S105 (a throwaway login of a local test server)
STARTING, READY, STOPPING = 0, 1, 2


@dataclass(frozen=True)
class TlsFiles:
    certificate: Path
    private_key: Path


def self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A throwaway certificate for ``host`` (IP or name), valid one day, made with openssl."""
    files = TlsFiles(directory / "sink-cert.pem", directory / "sink-key.pem")
    san = f"IP:{host}" if host.replace(".", "").isdigit() else f"DNS:{host}"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={host}",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(files.private_key),
            "-out",
            str(files.certificate),
        ],
        check=True,
        capture_output=True,
    )
    return files


class _Counter:
    def __init__(self, count):
        self._count = count

    async def handle_DATA(self, server, session, envelope):
        self._count.value += len(envelope.rcpt_tos)
        return "250 OK"


def _accept_bench_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    accepted = isinstance(auth_data, LoginPassword) and auth_data == (LOGIN.encode(), PASSWORD.encode())
    return AuthResult(success=accepted, handled=False)  # not handled: aiosmtpd answers 535 itself


class _DelayedSMTP(SMTP):
    """Each reply leaves ``delay`` seconds late: one simulated round trip per command."""

    delay = 0.0

    async def push(self, status):
        line = status.encode() if isinstance(status, str) else status
        # Only the last line of a reply ("250 ..." rather than "250-...") ends the client's wait.
        if self.delay and line[3:4] != b"-":
            await asyncio.sleep(self.delay)
        await super().push(status)


class _SinkController(Controller):
    def __init__(self, handler, delay: float, **kwargs):
        super().__init__(handler, **kwargs)
        self._delay = delay

    def factory(self):
        server = _DelayedSMTP(self.handler, **self.SMTP_kwargs)
        server.delay = self._delay
        return server


def _serve(port: int, tls: TlsFiles | None, delay: float, count, state, parent: int) -> None:
    # The parent stops the sink; a Ctrl-C on the terminal must not kill it before the run is wound up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # aiosmtpd warns on every login that a field it sets itself is deprecated.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    options: dict = {}
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.certificate, tls.private_key)
        options = {"tls_context": context, "require_starttls": True, "authenticator": _accept_bench_login}
    controller = _SinkController(
        _Counter(count), delay, hostname="127.0.0.1", port=port, server_hostname=SINK_HOSTNAME, **options
    )
    controller.start()
    state.value = READY
    # Flags in shared memory rather than multiprocessing.Event: setting an Event waits for its
    # waiters to wake, so a parent would hang setting it once this process has been killed.
    while state.value != STOPPING and os.getppid() == parent:
        time.sleep(0.1)
    controller.stop()


class SinkProcess:
    """A sink served by a child process that sets a shared ``state`` to READY once it listens, and stops
    when it is set to STOPPING (or its parent is gone)."""

    _process: multiprocessing.process.BaseProcess
    _state: Any

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self, timeout: float = 30.0) -> Self:
        self._process.start()
        deadline = time.monotonic() + timeout
        while self._state.value != READY:
            if not self._process.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the SMTP sink did not start (exit code {self._process.exitcode})")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process.pid is None:
            return
        self._state.value = STOPPING
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class CountingSink(SinkProcess):
    def __init__(self, tls: TlsFiles | None = None, delay_seconds: float = 0.0):
        context = multiprocessing.get_context("spawn")
        self.port = free_port()
        self.tls = tls
        self._count = context.RawValue("q", 0)  # one writer (the sink); readers only read
        self._state = context.RawValue("i", STARTING)
        self._process = context.Process(
            target=_serve,
            args=(self.port, tls, delay_seconds, self._count, self._state, os.getpid()),
            name="bench-sink",
            daemon=True,
        )

    @property
    def count(self) -> int:
        return self._count.value

    def smtp_settings(self) -> dict[str, str]:
        """The settings, as environment variables, that point the worker and the peers at this sink."""
        settings = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port)}
        if self.tls is not None:
            settings |= {
                "SMTP_USE_TLS": "true",
                "SMTP_USERNAME": LOGIN,
                "SMTP_PASSWORD": PASSWORD,
                # OpenSSL's default trust store, read by the worker's verifying TLS context: this certificate only.
                "SSL_CERT_FILE": str(self.tls.certificate),
            }
        return settings
