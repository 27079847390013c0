"""The benchmark's auth service: ``python -m auth_service`` on an in-memory MongoDB that uses its indexes.

A modeling choice of the benchmark's stand-in, not of the product: mongomock
answers every query by testing every document of the collection, even one on
``_id`` or on a field with a unique index, which a real MongoDB answers from
the index in about the same time however many documents there are. Left as
it is, a confirm's cost in the benchmark grows with the number of users
registered (each of the account's lookups scans them all), which says
something about mongomock, not about the service.

So this process patches mongomock before running the auth service exactly as
``python -m auth_service`` does:

- a filter that names ``_id``, or the field of a single-field index by a
  plain value (``{"email": ...}``, ``{"address_history.email": ...}``, also
  inside an ``$elemMatch`` on the array, as MongoDB's planner uses a multikey
  index for it) or by a
  range or ``$exists: true`` (``{"outbox_due_at": {"$lte": now}}``), is
  answered from the documents that index offers. Each index is complete, as
  MongoDB's are: every write of a document (insert, upsert, replace, and the
  check of unique fields mongomock runs after every update that changed a
  document) files the document under each value it holds for each indexed
  field (through arrays, as a multikey index does), so a value no document
  holds (a new registration's address) is answered without a scan. An offered
  document is believed only if it still matches the condition it was filed
  for (an update can move a document off a value in place; a deletion or TTL
  expiry removes it), and the whole filter is still tested against it. Two
  documents holding one unique value are both found, so mongomock's own
  duplicate check still fails the second write. Every other query scans, as
  mongomock does;
- TTL expiry runs at most once a second per collection, not on every read
  (mongomock tests every document of a collection with a TTL index on each
  read of it). MongoDB's own TTL monitor runs once a minute, so a document
  outliving its expiry by a second is what a real deployment sees too.

It also keeps the CPU time its threads spend inside mongomock (each call of
a collection's methods, and each step of a cursor, counted once however they
nest), so that the benchmark can say what of auth's CPU is the stand-in's: a
real MongoDB does that work in its own process. What the stand-in replaces in
auth itself (pymongo encoding a command and reading its reply) is not measured
here, so the figure without it is a lower bound of what auth would need.

The product's in-process store (``MONGO_URI=mongomock://``) is unchanged; the
bench's output and docs/performance.md say which parts run on this stand-in.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from mongomock import filtering
from mongomock.collection import Collection, Cursor
from mongomock.store import CollectionStore

from auth_service.__main__ import main

_scan = Collection._iter_documents
_ensure_uniques = Collection._ensure_uniques
_store_document = CollectionStore.__setitem__
_remove_expired = CollectionStore._remove_expired_documents
_create_index = CollectionStore.create_index
# SIGUSR1 writes what the stand-in holds (documents, and their bytes with its indexes) and the CPU seconds
# spent in it so far to this file; SIGUSR2 the CPU seconds alone.
REPORT_ENV = "BENCH_STAND_IN_REPORT"
INDEX = "_bench_index"
EXPIRED_AT = "_bench_expired_at"
EXPIRY_INTERVAL_SECONDS = 1.0
RANGES = frozenset({"$lt", "$lte", "$gt", "$gte"})
_lock = threading.Lock()
# The collection's methods that reach its documents (pymongo's API as the service calls it), and a cursor's steps.
TIMED_METHODS = (
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "replace_one",
    "find_one",
    "find_one_and_update",
    "find_one_and_replace",
    "find_one_and_delete",
    "delete_one",
    "delete_many",
    "count_documents",
    "aggregate",
    "distinct",
    "bulk_write",
)


class _CpuInStandIn:
    """CPU seconds the process's threads spent inside the stand-in, each call counted once however calls nest
    (``find_one`` iterates a cursor, an update re-files its document)."""

    def __init__(self):
        self._spent = 0.0
        self._lock = threading.Lock()
        self._depth = threading.local()

    @property
    def seconds(self) -> float:
        with self._lock:
            return self._spent

    def timed(self, method):
        def timed_method(*args, **kwargs):
            depth = getattr(self._depth, "value", 0)
            if depth:
                return method(*args, **kwargs)
            self._depth.value = 1
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                self._depth.value = 0
                with self._lock:
                    self._spent += spent

        timed_method.__wrapped__ = method  # type: ignore[attr-defined]
        return timed_method


cpu = _CpuInStandIn()


@dataclass
class _FieldIndex:
    """One single-field index: the ids filed under each value, and every id filed with any value."""

    by_value: dict[object, set] = field(default_factory=dict)
    present: set = field(default_factory=set)


def _plain(value: object) -> bool:
    return isinstance(value, str | int | float | bytes)


def _indexed_fields(store: CollectionStore) -> list[str]:
    return [index["key"][0][0] for index in store.indexes.values() if len(index["key"]) == 1]


def _index(store: CollectionStore, name: str) -> _FieldIndex:
    # Kept on the collection's store, so it lives and goes with the collection.
    return store.__dict__.setdefault(INDEX, {}).setdefault(name, _FieldIndex())


def _values(node: object, path: list[str]) -> list[object]:
    """The values at a dotted path, through arrays as MongoDB's multikey indexes go (None and documents
    left out)."""
    if isinstance(node, list):
        return [value for item in node for value in _values(item, path)]
    if not path:
        return [] if node is None or isinstance(node, Mapping) else [node]
    if isinstance(node, Mapping) and path[0] in node:
        return _values(node[path[0]], path[1:])
    return []


def _file(store: CollectionStore, document: Mapping) -> None:
    """File the document under each value of each indexed field it holds."""
    for name in _indexed_fields(store):
        values = _values(document, name.split("."))
        if not values:
            continue
        with _lock:
            index = _index(store, name)
            index.present.add(document["_id"])
            for value in values:
                if _plain(value):
                    index.by_value.setdefault(value, set()).add(document["_id"])


def _candidates(store: CollectionStore, filter: Mapping) -> tuple[str, object, set] | None:
    """The ids an index offers for the filter, with the condition they were filed for; None: scan."""
    for name in _indexed_fields(store):
        condition = filter.get(name)
        array, _, inner = name.rpartition(".")
        matching = filter.get(array) if array else None
        if isinstance(matching, Mapping) and isinstance(matching.get("$elemMatch"), Mapping):
            # {"address_history": {"$elemMatch": {"email": ...}}} goes by the index on address_history.email.
            condition = matching["$elemMatch"].get(inner)
        if _plain(condition):
            index = _index(store, name)
            return name, condition, index.by_value.get(condition, set())
        if (
            isinstance(condition, Mapping)
            and condition
            and (set(condition) <= RANGES or (set(condition) == {"$exists"} and condition["$exists"] is True))
        ):
            # A document without the field matches no range and no $exists: true.
            return name, condition, _index(store, name).present
    return None


def _lookup(collection: Collection, filter: Mapping) -> list[dict] | None:
    """The documents an index offers for the filter (still to be tested against it), or None: scan."""
    store = collection._store
    identifier = filter.get("_id")
    if identifier is not None and _plain(identifier):
        document = store._documents.get(identifier)
        return [] if document is None else [document]
    with _lock:
        offered = _candidates(store, filter)
        if offered is None:
            return None
        name, condition, filed = offered
        found = []
        for identifier in list(filed):
            document = store._documents.get(identifier)
            if document is not None and filtering.filter_applies({name: condition}, document):
                found.append(document)
            elif document is None or not _values(document, name.split(".")):
                filed.discard(identifier)  # deleted, expired, or moved off the field in place
            elif _plain(condition):
                filed.discard(identifier)  # moved off the value in place
        return found


def _iter_documents(self: Collection, filter: Mapping) -> Iterator[dict]:
    if not isinstance(filter, Mapping):
        return _scan(self, filter)
    self._store._remove_expired_documents()
    documents = _lookup(self, filter)
    if documents is None:
        return _scan(self, filter)
    return (document for document in documents if filtering.filter_applies(filter, document))


def _create_index_and_file(self: CollectionStore, index_name: str, index: dict) -> None:
    _create_index(self, index_name, index)
    for document in list(self._documents.values()):  # what was stored before the index
        _file(self, document)


def _store_and_file(self: CollectionStore, key: object, document: dict) -> None:
    _store_document(self, key, document)
    _file(self, document)


def _file_then_check_uniques(self: Collection, document: dict) -> None:
    # mongomock runs this after every write that changed a document in place, before it is seen as done.
    _file(self._store, document)
    _ensure_uniques(self, document)


def _remove_expired_at_most_every_second(self: CollectionStore) -> None:
    if not self._ttl_indexes:
        return
    now = time.monotonic()
    with _lock:
        if now - self.__dict__.get(EXPIRED_AT, float("-inf")) < EXPIRY_INTERVAL_SECONDS:
            return
        self.__dict__[EXPIRED_AT] = now
    _remove_expired(self)


def install() -> None:
    """Patch mongomock in this process; only the benchmark's auth process (and its unit test) calls it."""
    Collection._iter_documents = _iter_documents  # type: ignore[method-assign]
    Collection._ensure_uniques = _file_then_check_uniques  # type: ignore[method-assign]
    CollectionStore.__setitem__ = _store_and_file  # type: ignore[method-assign]
    CollectionStore.create_index = _create_index_and_file  # type: ignore[method-assign]
    CollectionStore._remove_expired_documents = _remove_expired_at_most_every_second  # type: ignore[method-assign]
    for name in TIMED_METHODS:
        setattr(Collection, name, cpu.timed(getattr(Collection, name)))
    Cursor.__next__ = cpu.timed(Cursor.__next__)  # type: ignore[method-assign]


def _deep_size(roots: list[object], seen: set[int]) -> int:
    """Bytes of the objects reachable from ``roots`` through dicts, lists, tuples and sets, each once."""
    total, pending = 0, list(roots)
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend(item)
        elif isinstance(item, _FieldIndex):
            pending.extend((item.by_value, item.present))
    return total


def stand_in_size() -> dict[str, int]:
    """What every in-process collection holds: its documents and this module's indexes of them.

    The share of the auth process's memory that a real MongoDB would hold in its own process instead;
    interned strings shared with the rest of the process are counted once, here."""
    stores = [item for item in gc.get_objects() if isinstance(item, CollectionStore)]
    seen: set[int] = set()
    size = sum(_deep_size([store._documents, store.__dict__.get(INDEX, {})], seen) for store in stores)
    return {"documents": sum(len(store._documents) for store in stores), "bytes": size}


def _write_report(figures: dict[str, float]) -> None:
    path = os.environ[REPORT_ENV]
    with open(path + ".part", "w") as file:
        json.dump(figures, file)
    os.replace(path + ".part", path)


def _report_size(signum: int, frame: object) -> None:
    for _ in range(10):
        try:
            figures = stand_in_size()
            break
        except RuntimeError:  # a background write (the outbox relay, expiry) changed a collection mid-walk
            continue
    else:
        return
    _write_report({**figures, "cpu_seconds": cpu.seconds})


def _report_cpu(signum: int, frame: object) -> None:
    # Without the walk of stand_in_size: read at the edges of a measurement, it must cost next to nothing.
    _write_report({"cpu_seconds": cpu.seconds})


if __name__ == "__main__":
    install()
    if os.environ.get(REPORT_ENV):
        signal.signal(signal.SIGUSR1, _report_size)
        signal.signal(signal.SIGUSR2, _report_cpu)
    print("auth_service on mongomock with complete single-field indexes, expiry once a second (bench.indexed_mongo)")
    sys.exit(main())
