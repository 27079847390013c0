"""One lock around the in-process store's operations (mongomock), shared by every adapter."""

from __future__ import annotations

import threading

# Re-entrant: a write that looks a document up first takes it again for the look-up.
_IN_PROCESS_LOCK = threading.RLock()
_reads_guarded = False


class SerializedWrites:
    """Runs each write under the in-process store's one lock when enabled.

    mongomock checks a unique index and inserts, or finds and modifies, in two
    steps; with several request threads that gap would let two equal addresses
    in, or let two parallel refreshes both claim one token. One lock for every
    adapter, since several of them write to one collection (the accounts'). A
    real server needs no lock: its unique indexes and single-document updates
    are atomic.
    """

    def __init__(self, enabled: bool):
        self._lock = _IN_PROCESS_LOCK if enabled else None
        if enabled:
            guard_in_process_reads()

    def __call__(self, operation, *args, **kwargs):
        if self._lock is None:
            return operation(*args, **kwargs)
        with self._lock:
            return operation(*args, **kwargs)


def guard_in_process_reads() -> None:
    """Make mongomock's reads take the writes' lock.

    mongomock updates a stored document in place, and a read copies each
    document it returns field by field: a read beside a write of the same
    document failed with "dictionary changed size during iteration" (a 500).
    Every read computes its results in one place, which now runs under the
    lock and returns them as a list, so a read sees a document before or after
    a write, never during it. A real server's reads see whole documents.
    """
    global _reads_guarded
    with _IN_PROCESS_LOCK:
        if _reads_guarded:
            return
        # Imported here: a service on a real MongoDB never loads the in-process store (about 2 MiB).
        import mongomock.collection

        compute = mongomock.collection.Cursor._compute_results

        def compute_under_lock(self, *args, **kwargs):
            with _IN_PROCESS_LOCK:
                return compute(self, *args, **kwargs)

        mongomock.collection.Cursor._compute_results = compute_under_lock  # type: ignore[method-assign]
        _reads_guarded = True
