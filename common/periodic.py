"""A daemon thread that does one thing every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic(threading.Thread):
    """Runs ``work`` every ``interval`` seconds (first at once if ``at_start``). A round that fails is
    logged with ``failed_message`` and the next one tries again: the thread never dies of it."""

    def __init__(
        self, name: str, interval: float, work: Callable[[], object], failed_message: str, at_start: bool = False
    ):
        super().__init__(name=name, daemon=True)
        self._interval = interval
        self._work = work
        self._failed_message = failed_message
        self._at_start = at_start
        self._stopping = threading.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        if self._at_start:
            self.run_once()
        while not self._stopping.wait(self._interval):
            self.run_once()

    def run_once(self) -> None:
        """One round, as the thread runs it: a failure is logged, never raised."""
        try:
            self._work()
        except Exception as error:
            log.warning(self._failed_message, extra={"error": repr(error)})
