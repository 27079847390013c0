"""Many users registering and confirming at once, timed. Used by a test and by ``bench/``."""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from devtools.stack import LocalStack

PASSWORD = "correct horse battery"


@dataclass
class UserRun:
    email: str
    registered: int = 0
    created_at: float = 0.0
    mailed_at: float | None = None
    confirmed: int = 0
    logged_in: int = 0

    @property
    def seconds_to_mail(self) -> float | None:
        return None if self.mailed_at is None else self.mailed_at - self.created_at

    @property
    def complete(self) -> bool:
        return (self.registered, self.confirmed, self.logged_in) == (201, 200, 200)


def one_user(stack: LocalStack, mail_timeout: float) -> UserRun:
    run = UserRun(f"load-{uuid.uuid4().hex[:12]}@example.com")
    run.registered = stack.call("POST", "/auth/register", {"email": run.email, "password": PASSWORD})[0]
    run.created_at = time.time()
    mails = stack.sink.wait_for(run.email, timeout=mail_timeout)
    if not mails:
        return run
    run.mailed_at = mails[0].received_at
    run.confirmed = stack.call("POST", "/auth/confirm", {"email": run.email, "code": mails[-1].code})[0]
    run.logged_in = stack.call("POST", "/auth/login", {"email": run.email, "password": PASSWORD})[0]
    return run


def register_and_confirm_many(
    stack: LocalStack, users: int, concurrency: int, mail_timeout: float = 60
) -> list[UserRun]:
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: one_user(stack, mail_timeout), range(users)))


def summary(runs: list[UserRun]) -> dict:
    delays = sorted(run.seconds_to_mail for run in runs if run.seconds_to_mail is not None)
    return {
        "users": len(runs),
        "complete": sum(run.complete for run in runs),
        "mails": len(delays),
        "median_ms": round(statistics.median(delays) * 1000, 1) if delays else None,
        "p95_ms": round(delays[int(len(delays) * 0.95) - 1] * 1000, 1) if delays else None,
        "worst_ms": round(delays[-1] * 1000, 1) if delays else None,
    }
