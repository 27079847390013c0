"""A local SMTP server that keeps every mail it receives and can print it.

``python -m devtools.mailsink`` runs one on SMTP_PORT (1025) for ``make run``.
Tests and the demo use ``MailSink`` in-process, and can make it refuse mail
for a while to simulate an SMTP outage.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import random
import re
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller

CODE_PATTERN = re.compile(r"\b\d{6}\b")


@dataclass(frozen=True)
class ReceivedMail:
    recipient: str
    subject: str
    text: str
    html: str
    received_at: float
    # The bytes as received (DATA), for tests that check headers or a DKIM signature.
    raw: bytes = b""

    @property
    def code(self) -> str | None:
        match = CODE_PATTERN.search(self.text)
        return match.group(0) if match else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int, taken: Collection[int] = ()) -> int:
    """A port p with p .. p + count - 1 all free now and none of them in ``taken`` (ports chosen for
    something else, not bound yet): the worker's processes serve their metrics on them.

    Drawn below the kernel's ephemeral range: a port the kernel hands out (bind to 0) has neighbours
    the kernel hands out too, to the next outgoing connection, which took them between this check and
    a later worker process's bind when the machine was busy."""
    low = _ephemeral_low()
    for _ in range(100):
        first = random.randrange(max(1024, low - 12000), low - count)
        ports = range(first, first + count)
        if not any(port in taken for port in ports) and all(_free(port) for port in ports):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class _Handler:
    def __init__(self, sink: MailSink):
        self._sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self._sink.refusing:
            self._sink.refused += 1
            return self._sink.refusal
        dead = self._sink.dead_mailboxes.get(address.lower())
        if dead is not None:
            self._sink.refused += 1
            return dead
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self._sink.delay_seconds:
            # Each mail waits on its own: sessions that started in one order may finish in another.
            await asyncio.sleep(random.uniform(*self._sink.delay_seconds))
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
        for recipient in envelope.rcpt_tos:
            self._sink.deliver(
                ReceivedMail(
                    recipient=recipient.lower(),
                    subject=str(message["subject"]),
                    text=text_part.get_content() if text_part else "",
                    html=html_part.get_content() if html_part else "",
                    received_at=time.time(),
                    raw=envelope.content,
                )
            )
        return "250 Message accepted"


class MailSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, echo: bool = False):
        self.port = port or free_port()
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)
        self._mails: list[ReceivedMail] = []
        self._arrived = threading.Condition()
        self._echo = echo
        self.refusing = False
        # What a refused recipient is answered while refusing (a busy or closing server: 4xx).
        self.refusal = "451 4.3.0 Mail server temporarily unavailable"
        # Addresses answered for good, as a server answers a mailbox that does not exist (address -> reply).
        self.dead_mailboxes: dict[str, str] = {}
        self.refused = 0  # recipients refused, while refusing or for good
        self._running = False
        # (low, high): each mail is accepted after a random pause in that range, as a busy server would.
        self.delay_seconds: tuple[float, float] | None = None

    def start(self) -> MailSink:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop the server; stopping one that is not running (twice, or never started) does nothing."""
        if self._running:
            self._running = False
            self._controller.stop()

    def deliver(self, mail: ReceivedMail) -> None:
        with self._arrived:
            self._mails.append(mail)
            self._arrived.notify_all()
        if self._echo:
            print(f"\n--- mail to {mail.recipient}: {mail.subject}\n{mail.text}", flush=True)

    def mails_to(self, recipient: str) -> list[ReceivedMail]:
        with self._arrived:
            return [mail for mail in self._mails if mail.recipient == recipient.lower()]

    def all(self) -> list[ReceivedMail]:
        with self._arrived:
            return list(self._mails)

    def wait_for(self, recipient: str, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                mails = [mail for mail in self._mails if mail.recipient == recipient.lower()]
                remaining = deadline - time.monotonic()
                if len(mails) >= count or remaining <= 0:
                    return mails
                self._arrived.wait(remaining)


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMTP sink that prints every mail it receives.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    args = parser.parse_args()
    sink = MailSink(args.host, args.port, echo=True).start()
    print(f"mail sink listening on {args.host}:{sink.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
