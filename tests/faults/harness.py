"""Driving registrations through a running system and judging how each one ended."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pika
import pika.exceptions

from common.messaging import topology
from common.messaging.connection import parameters
from devtools.stack import ROOT, LocalStack
from email_service.entrypoints.dlq import DeadLetterQueues

PASSWORD = "correct horse battery staple"
CLIENTS = 8
SETTLE_QUIET_SECONDS = 3.0

FIGURE_COLUMNS = (
    ("fault", 24),
    ("driven", 6),
    ("delivered", 9),
    ("lost", 4),
    ("duplicated", 10),
    ("resent", 6),
    ("dead_lettered", 13),
    ("seconds", 7),
)


@dataclass
class Outcome:
    """How every registration of a run ended, as the tests assert on it."""

    driven: int
    delivered: set[str]
    lost: set[str]
    emails: dict[str, int]
    distinct_codes: dict[str, int]
    resent: set[str]

    @property
    def duplicated(self) -> set[str]:
        return {address for address, count in self.emails.items() if count > 1}

    def figures(self, fault: str, seconds: float, dead_lettered: int) -> dict:
        return {
            "fault": fault,
            "driven": self.driven,
            "delivered": len(self.delivered),
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "resent": len(self.resent),
            "dead_lettered": dead_lettered,
            "seconds": round(seconds, 1),
        }


@dataclass
class FaultRun:
    stack: LocalStack
    rabbitmq_url: str
    names: dict[str, str]
    registered: list[str] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)
    resent: set[str] = field(default_factory=set)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def work_queues(self) -> list[str]:
        return [
            self.names["ACCOUNT_CREATION_QUEUE"],
            self.names["CONFIRM_EMAIL_CODE_QUEUE"],
            self.names["ACCOUNT_CONFIRMED_QUEUE"],
            self.names["ACCOUNT_NOTIFICATIONS_QUEUE"],
        ]

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    # driving

    def register(self, count: int, over_seconds: float = 0.0) -> list[str]:
        """Register ``count`` new addresses (spread over ``over_seconds``); returns those answered 201."""
        addresses = [f"fault-{uuid.uuid4().hex[:12]}@example.com" for _ in range(count)]
        pause = over_seconds / count if over_seconds else 0.0

        def one(address: str) -> tuple[str, int]:
            status, _, _ = self.stack.call(
                "POST", "/auth/register", {"email": address, "password": PASSWORD, "name": "Fault Test"}
            )
            return address, status

        created = []
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = []
            for address in addresses:
                futures.append(pool.submit(one, address))
                if pause:
                    time.sleep(pause)
            for future in futures:
                address, status = future.result()
                if status == 201:
                    created.append(address)
                else:
                    self.refused[status] += 1
        self.registered.extend(created)
        return created

    def wait_for_mails(self, minimum: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while len(self.stack.sink.all()) < minimum and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.stack.sink.all())

    def settle(self, addresses: list[str], timeout: float = 150.0) -> None:
        """Wait until every address has mail and the queues stayed empty for a few seconds."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            waiting = [address for address in addresses if not self.stack.sink.mails_to(address)]
            if not waiting and self.queued() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= SETTLE_QUIET_SECONDS:
                    return
            else:
                quiet_since = None
            time.sleep(0.2)

    def queued(self) -> int:
        """Messages waiting in the work and retry queues (not counting dead letters)."""
        try:
            connection = pika.BlockingConnection(parameters(self.rabbitmq_url, "fault harness"))
        except pika.exceptions.AMQPError:
            return -1
        try:
            channel = connection.channel()
            total = 0
            for name in self.work_queues:
                queue = topology.WorkQueue(name, retry_delays(self.stack.env))
                for queue_name in [queue.name, *queue.retry_queues]:
                    total += channel.queue_declare(queue_name, passive=True).method.message_count
            return total
        finally:
            connection.close()

    def dead_letters(self) -> dict[str, int]:
        creation, code, confirmed, notifications = self.work_queues
        routes = topology.Topology(creation, code, confirmed, account_notifications=notifications)
        with DeadLetterQueues(self.rabbitmq_url, routes) as dead:
            return dead.counts()

    # judging

    def code_mails(self, address: str) -> list:
        """The mails with a code to ``address``: a confirmed account also gets notices (welcome)."""
        return [mail for mail in self.stack.sink.mails_to(address) if mail.code is not None]

    def confirm_last_code(self, address: str) -> int:
        """Confirm with the last code mailed to ``address``; the final HTTP status."""
        mails = self.code_mails(address)
        if not mails:
            return 0
        code = mails[-1].code
        status = 0
        for _ in range(5):
            status, _, _ = self.stack.call("POST", "/auth/confirm", {"email": address, "code": code})
            if status != 202:  # 202: the verdict did not come in time; asking again is safe
                return status
            time.sleep(1)
        return status

    def resend_and_wait(self, address: str, timeout: float = 30.0) -> bool:
        before = len(self.stack.sink.mails_to(address))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _, _ = self.stack.call("POST", "/auth/resend-code", {"email": address})
            if status == 202:
                break
            time.sleep(0.5)  # 429 inside the cooldown, 503 while a store is down
        else:
            return False
        self.resent.add(address)
        return len(self.stack.sink.wait_for(address, before + 1, max(0.0, deadline - time.monotonic()))) > before

    def can_log_in(self, address: str) -> bool:
        status, _, body = self.stack.call("POST", "/auth/login", {"email": address, "password": PASSWORD})
        return status == 200 and bool(body.get("access_token"))

    def judge(self, addresses: list[str], recover_expired: bool = False) -> Outcome:
        """Confirm every address with its last code (resending first where its code was lost, if allowed)."""

        def one(address: str) -> bool:
            status = self.confirm_last_code(address)
            if status == 410 and recover_expired and self.resend_and_wait(address):
                status = self.confirm_last_code(address)
            return status == 200 and self.can_log_in(address)

        with ThreadPoolExecutor(CLIENTS) as pool:
            confirmed = dict(zip(addresses, pool.map(one, addresses)))
        mails = {address: self.code_mails(address) for address in addresses}
        return Outcome(
            driven=len(addresses),
            delivered={address for address, ok in confirmed.items() if ok},
            lost={address for address, ok in confirmed.items() if not ok},
            emails={address: len(found) for address, found in mails.items()},
            distinct_codes={address: len({mail.code for mail in found}) for address, found in mails.items()},
            resent=set(self.resent),
        )

    def log_tails(self, characters: int = 3000) -> str:
        return (
            f"--- worker log (end)\n{self.stack.worker.log_text()[-characters:]}\n"
            f"--- auth log (end)\n{self.stack.auth.log_text()[-characters:]}"
        )


def retry_delays(env: dict[str, str]) -> tuple[int, ...]:
    raw = env.get("RETRY_DELAYS_SECONDS")
    return tuple(int(delay) for delay in raw.split(",")) if raw else topology.RETRY_DELAYS_SECONDS


def dlq_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m email_service dlq ARGS`` as an operator runs it, with ``env`` as its environment."""
    return operator_command(env, "dlq", *args)


def migrate_command(env: dict[str, str]) -> subprocess.CompletedProcess:
    return operator_command(env, "migrate-queues")


def operator_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "email_service", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
