"""The keys access tokens are signed and verified with, held in memory and kept fresh.

Three sources, chosen by the settings:
- ``SharedSecretKeys``: HS256 under JWT_SECRET (JWT_ALGORITHM=HS256), nothing published;
- ``FileKeys``: JWT_SIGNING_KEYS_FILE, read again when it changes;
- ``RotatingKeys``: keys in MongoDB, generated at first start and rotated on
  the schedule of ``domain.signing_keys``; whichever replica finds a rotation
  due adds the next key, and the store lets exactly one do so.

``KeyRing`` holds the current ``KeySet``: signing, verifying and serving the
JWKS read it from memory. ``KeyRefresher`` reloads it every few seconds, so a
key another replica added, or an edited file, is picked up without a restart.
A reload that fails (MongoDB away, a broken file) keeps the keys in hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from auth_service.domain.signing_keys import (
    KeyRecord,
    KeySchedule,
    KeySet,
    SigningKey,
    generate_key,
    shared_secret_key,
)
from auth_service.ports import SigningKeyStore

log = logging.getLogger(__name__)


class KeySource(Protocol):
    def load(self, now: datetime) -> KeySet: ...


class KeysFileReader(Protocol):
    def changed(self) -> bool: ...
    def read(self) -> list[SigningKey]: ...


class SharedSecretKeys:
    def __init__(self, secret: str):
        key = shared_secret_key(secret)
        self._set = KeySet.of(key, [])

    def load(self, now: datetime) -> KeySet:
        return self._set


class FileKeys:
    def __init__(self, keys_file: KeysFileReader):
        self._file = keys_file
        self._set: KeySet | None = None

    def load(self, now: datetime) -> KeySet:
        if self._set is None or self._file.changed():
            keys = self._file.read()
            self._set = KeySet.of(keys[0], keys)
            log.info(
                "signing keys read from the keys file",
                extra={"signing_kid": keys[0].kid, "published": [key.kid for key in keys]},
            )
        return self._set


class RotatingKeys:
    def __init__(self, store: SigningKeyStore, alg: str, schedule: KeySchedule):
        self._store = store
        self._alg = alg
        self.schedule = schedule

    def load(self, now: datetime) -> KeySet:
        records = self._store.records()
        if self.schedule.rotation_due(records, now, self._alg):
            records = self.rotate(now, records)
        gone = {record.key.kid for record in self.schedule.removable(records, now)}
        for kid in gone:
            # Any replica may get here first: the others find nothing left to delete.
            if self._store.remove(kid):
                log.info("retired signing key removed: its last token has expired", extra={"kid": kid})
        key_set = self.schedule.key_set([record for record in records if record.key.kid not in gone], now)
        if key_set is None:  # only a clock set back before the first key's start
            raise RuntimeError("no stored signing key signs yet")
        return key_set

    def records(self) -> list[KeyRecord]:
        return self._store.records()

    def rotate(self, now: datetime, records: list[KeyRecord] | None = None) -> list[KeyRecord]:
        """Add the next key (published now, signing after the lead), unless another replica adds
        one first; returns the keys as stored afterwards."""
        if records is None:
            records = self._store.records()
        successor = self.schedule.successor(records, generate_key(self._alg), now)
        if self._store.add(successor):
            log.info(
                "signing key rotation: next key published",
                extra={
                    "kid": successor.key.kid,
                    "alg": successor.key.alg,
                    "signs_from": successor.signs_from.isoformat(),
                },
            )
        return self._store.records()


class KeyRing:
    def __init__(self, source: KeySource, clock: Callable[[], float] = time.time):
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._set = source.load(self._now())

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def current(self) -> KeySet:
        return self._set

    def refresh(self) -> KeySet:
        with self._lock:
            self._set = self._source.load(self._now())
        return self._set


class KeyRefresher(threading.Thread):
    """Reloads the key ring every ``interval`` seconds until stopped."""

    def __init__(self, ring: KeyRing, interval: float):
        super().__init__(name="signing-keys", daemon=True)
        self._ring = ring
        self._interval = interval
        self._stopping = threading.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._ring.refresh()
            except Exception as error:
                log.warning("signing keys not reloaded; the keys in hand stay", extra={"error": repr(error)})
