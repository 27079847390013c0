"""One lock around MongoDB operations, for mongomock only."""

from __future__ import annotations

import threading


class SerializedWrites:
    """Runs each write under one lock when enabled.

    mongomock checks a unique index and inserts, or finds and modifies, in two
    steps; with several request threads that gap would let two equal addresses
    in, or let two parallel refreshes both claim one token. A real server needs
    no lock: its unique indexes and single-document updates are atomic.
    """

    def __init__(self, enabled: bool):
        self._lock = threading.Lock() if enabled else None

    def __call__(self, operation, *args, **kwargs):
        if self._lock is None:
            return operation(*args, **kwargs)
        with self._lock:
            return operation(*args, **kwargs)
