"""Waiting for what a test expects, by asking until it has happened: never for a fixed time.

A fixed sleep is either too short on a busy machine (the test fails though nothing is wrong) or
longer than needed everywhere else. To show that something did NOT happen, wait instead for a
sentinel: something that follows it on the same path (a later request's mail, a later event), and
look once the sentinel is there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    what: str,
    timeout: float = 15.0,
    every: float = 0.05,
    pause: Callable[[float], object] = time.sleep,
) -> T:
    """Ask ``check`` until its answer is true and return that answer; fail after ``timeout`` seconds,
    saying ``what`` was awaited and the last answer. ``pause`` waits between two asks: a pika
    ``BlockingConnection.sleep`` keeps its connection served meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last answer: {answer!r})")
        pause(every)
