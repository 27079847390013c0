"""What both MongoDB adapters need: writes serialized on mongomock, dates read back in UTC."""

from __future__ import annotations

import threading
from datetime import UTC, datetime


class Writes:
    """Runs a collection operation, one at a time when asked to.

    mongomock checks a unique index or a filter and then writes, in two steps;
    with several request threads that gap would let two equal addresses in, or
    two compare-and-set updates both succeed. A real server needs no lock: each
    single-document write is atomic there.
    """

    def __init__(self, serialize: bool):
        self._lock = threading.Lock() if serialize else None

    def __call__(self, operation, *args, **kwargs):
        if self._lock is None:
            return operation(*args, **kwargs)
        with self._lock:
            return operation(*args, **kwargs)


def aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:  # BSON dates come back naive, in UTC
        return moment.replace(tzinfo=UTC)
    return moment
