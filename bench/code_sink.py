"""The sign-up benchmark's one SMTP sink: counts every mail, and while asked to, hands each to the driver.

It runs in a process of its own (aiosmtpd), as bench/sink.py's counting sink
does, so it takes no share of the driver's GIL. Each mail is counted in shared
memory; while ``keep`` is on (the latency phases), the recipient, the time the
mail's data ended (``time.monotonic``, one clock for every process of this
machine) and the mail's bytes are also put on a queue the driver reads. During
a sustained burst only the count is kept, so the sink costs as little as it can.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import time
from dataclasses import dataclass

from aiosmtpd.controller import Controller

from bench.sink import READY, STARTING, STOPPING, SinkProcess
from devtools.mailsink import free_port


@dataclass(frozen=True)
class Arrival:
    recipient: str
    at: float  # time.monotonic() when the mail's data ended
    raw: bytes


class _Handler:
    def __init__(self, count, keep, arrivals):
        self._count = count
        self._keep = keep
        self._arrivals = arrivals

    async def handle_DATA(self, server, session, envelope):
        at = time.monotonic()
        self._count.value += len(envelope.rcpt_tos)
        if self._keep.value:
            for recipient in envelope.rcpt_tos:
                self._arrivals.put((recipient.lower(), at, envelope.original_content or envelope.content))
        return "250 OK"


def _serve(port: int, count, keep, arrivals, state, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the sink
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    controller = Controller(
        _Handler(count, keep, arrivals), hostname="127.0.0.1", port=port, server_hostname="bench-code-sink"
    )
    controller.start()
    state.value = READY
    while state.value != STOPPING and os.getppid() == parent:
        time.sleep(0.1)
    controller.stop()
    # Mails still on their way to a driver that stopped reading (a run that failed while keeping them)
    # would hold this process's exit until the parent's join gave up and killed it.
    arrivals.cancel_join_thread()


class CodeSink(SinkProcess):
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.port = free_port()
        self._count = context.RawValue("q", 0)
        self._keep = context.RawValue("i", 0)
        self._state = context.RawValue("i", STARTING)
        self._arrivals = context.Queue()
        self._process = context.Process(
            target=_serve,
            args=(self.port, self._count, self._keep, self._arrivals, self._state, os.getpid()),
            name="bench-code-sink",
            daemon=True,
        )

    @property
    def count(self) -> int:
        return self._count.value

    def keep(self, on: bool) -> None:
        """Hand each mail to the driver (on) or only count it (off); off also drops what is still queued."""
        self._keep.value = int(on)
        if not on:
            while True:
                try:
                    self._arrivals.get_nowait()
                except queue.Empty:
                    break

    def next_arrival(self, timeout: float) -> Arrival | None:
        try:
            recipient, at, raw = self._arrivals.get(timeout=timeout)
        except queue.Empty:
            return None
        return Arrival(recipient, at, raw)

    def stop(self) -> None:
        if self._process.pid is None:
            return
        self.keep(False)  # a child whose queue is full would not exit
        super().stop()
        self._arrivals.close()
        self._arrivals.join_thread()
