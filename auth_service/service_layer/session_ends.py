"""Sessions that have ended, remembered in memory for as long as one of their access tokens may live.

A Bearer check asks ``ended`` instead of reading the session from MongoDB.
The set is filled three ways, so that every replica refuses an ended
session's access token at once:
- the process that ends a session adds it itself, before it answers;
- every replica hears ``user.sessions_revoked`` on a queue of its own
  (entrypoints/session_ends_listener.py) and adds the ids it names;
- at start, and each time that queue is (re)connected, the sessions ended
  within the last access-token lifetime are read from MongoDB once, which
  covers the events published while a replica was away.

An id can be forgotten once every access token of its session has expired:
no token outlives ``JWT_TTL_SECONDS`` (plus the verifier's leeway).

A session that ends with every other one of its account (password change or
reset, "this wasn't me") needs no entry: the account's token version rose in
the same write, and the Bearer check reads the account anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime


class EndedSessions:
    def __init__(self, remember_seconds: float, clock: Callable[[], float] = time.time):
        self._remember = remember_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._next_prune = 0.0

    def add(self, session_ids: Iterable[str], ended_at: float | None = None) -> None:
        ended = self._clock() if ended_at is None else ended_at
        until = ended + self._remember
        with self._lock:
            for session_id in session_ids:
                self._until[session_id] = max(until, self._until.get(session_id, 0.0))
            self._prune()

    def load(self, ended: Iterable[tuple[str, datetime]]) -> None:
        for session_id, ended_at in ended:
            self.add([session_id], ended_at.timestamp())

    def ended(self, session_id: str) -> bool:
        # A plain dict read: no lock needed to look, and this runs on every Bearer request.
        return session_id in self._until

    def since(self) -> float:
        """From when sessions ended must be remembered (the oldest end a live token may still follow)."""
        return self._clock() - self._remember

    def __len__(self) -> int:
        return len(self._until)

    def _prune(self) -> None:
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + min(60.0, self._remember)
        for session_id in [sid for sid, until in self._until.items() if until <= now]:
            del self._until[session_id]
