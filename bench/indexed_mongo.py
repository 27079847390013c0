"""The benchmark's auth service: ``python -m auth_service`` on an in-memory MongoDB that uses its indexes.

A modeling choice of the benchmark's stand-in, not of the product: mongomock
answers every query by testing every document of the collection, even one on
``_id`` or on a field with a unique index, which a real MongoDB answers from
the index in about the same time however many documents there are. Left as
it is, a confirm's cost in the benchmark grows with the number of users
registered (each of the account's lookups scans them all), which says
something about mongomock, not about the service.

So this process patches mongomock's document iteration before running the
auth service exactly as ``python -m auth_service`` does: a filter that names
``_id``, or a field with a single-field unique index, by a plain value is
answered from that one document. For a unique field a dictionary remembers
which ``_id`` held each value; an entry is trusted only if that document still
holds the value (else the collection is scanned as before and the entry
refreshed), and the rest of the filter is still tested against the document
(a unique value can match no other document). Every other query scans, as
mongomock does. The product's in-process store (``MONGO_URI=mongomock://``)
is unchanged; the bench's output and docs/performance.md say the confirm part
runs on this stand-in.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Mapping

from mongomock import filtering
from mongomock.collection import Collection

from auth_service.__main__ import main

_scan = Collection._iter_documents
POSITIONS = "_bench_unique_positions"
_positions_lock = threading.Lock()


def _plain(value: object) -> bool:
    return isinstance(value, str | int | float | bytes)


def _unique_fields(collection: Collection) -> list[str]:
    return [
        index["key"][0][0]
        for index in collection._store.indexes.values()
        if index.get("unique") and len(index["key"]) == 1
    ]


def _lookup(collection: Collection, filter: Mapping) -> list[dict] | None:
    """The matching documents read from an index, or None when the filter needs a scan."""
    store = collection._store
    identifier = filter.get("_id")
    if identifier is not None and _plain(identifier):
        document = store._documents.get(identifier)
        return [] if document is None else [document]
    for field in _unique_fields(collection):
        value = filter.get(field)
        if value is None or not _plain(value):
            continue
        with _positions_lock:
            # Kept on the collection's store, so it lives and goes with the collection.
            positions = store.__dict__.setdefault(POSITIONS, {})
            position = positions.setdefault(field, {})
            identifier = position.get(value)
        document = store._documents.get(identifier) if identifier is not None else None
        if document is None or document.get(field) != value:
            # Unknown or stale: scan for the value as mongomock does, and remember where it is.
            found = list(_scan(collection, {field: value}))
            if not found:
                return []
            document = found[0]
            with _positions_lock:
                position[value] = document["_id"]
        return [document]
    return None


def _iter_documents(self: Collection, filter: Mapping) -> Iterator[dict]:
    if not isinstance(filter, Mapping):
        return _scan(self, filter)
    # TTL emulation runs on the store's reads, as on a scan.
    self._store._remove_expired_documents()
    documents = _lookup(self, filter)
    if documents is None:
        return _scan(self, filter)
    return (document for document in documents if filtering.filter_applies(filter, document))


def install() -> None:
    """Patch mongomock in this process; only the benchmark's auth process calls it."""
    Collection._iter_documents = _iter_documents  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    print("auth_service on mongomock with index lookups for _id and unique fields (bench.indexed_mongo)")
    sys.exit(main())
