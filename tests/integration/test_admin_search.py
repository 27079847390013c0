"""The admin search over 20,000 accounts, page by page, on the real auth process.

The accounts are written straight into the store the service reads (a MongoDB wire server over
mongomock, which both share), as a deployment's database holds them; the service then pages through
them by address prefix and by status. Every account must come exactly once. Each page's time is
printed (run with ``-s`` to see it): speed is reported here, not asserted. The stand-in has no query
planner: that a page is one index range is the query's shape (tests/unit/test_admin_users.py).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import pymongo
import pytest

from devtools.mailsink import free_port
from devtools.mongo_wire import MongoWireServer
from tests.integration.test_admin_api import create_key

ACCOUNTS = 20_000
PAGE = 200


@pytest.fixture(scope="module")
def populated(start_module_stack, tmp_path_factory):
    mongo = MongoWireServer(free_port()).start()
    try:
        now = datetime.now(UTC)
        documents = [
            {
                "_id": f"{index:032x}",
                # Two prefixes, so that a prefix search has neighbours on both sides to stay out of.
                "email": f"{'bulk' if index % 2 else 'mass'}-{index:05d}@example.com",
                "password_hash": "$2b$04$" + "x" * 53,
                "status": "verified" if index % 4 else "pending_verification",
                "created_at": now,
                "token_version": 0,
                **({} if index % 4 else {"expires_at": datetime(2100, 1, 1, tzinfo=UTC)}),
            }
            for index in range(ACCOUNTS)
        ]
        # Stored before the service starts, as a deployment's database holds them: the service then
        # makes its indexes over them (the in-process stand-in checks a unique index on every insert).
        client: pymongo.MongoClient = pymongo.MongoClient(mongo.uri)
        for start in range(0, ACCOUNTS, 2000):
            client["auth"]["users"].insert_many(documents[start : start + 2000])
        client.close()
        stack = start_module_stack(
            MONGO_URI=mongo.uri, MONGO_DB="auth", ADMIN_KEYS_FILE=str(tmp_path_factory.mktemp("a") / "keys")
        )
        yield stack, documents
    finally:
        mongo.stop()


def pages(stack, key: str, query: str) -> tuple[list[str], list[float]]:
    seen: list[str] = []
    times: list[float] = []
    cursor = None
    while True:
        path = f"/admin/users?{query}&limit={PAGE}" + (f"&cursor={cursor}" if cursor else "")
        started = time.perf_counter()
        status, _, page = stack.admin_call("GET", path, key)
        times.append(time.perf_counter() - started)
        assert status == 200, page
        seen += [user["email"] for user in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, times


def report(label: str, times: list[float]) -> None:
    print(
        f"\n{label}: {len(times)} pages of {PAGE}, per page median {statistics.median(times) * 1000:.0f} ms, "
        f"first {times[0] * 1000:.0f} ms, last {times[-1] * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )


def test_every_account_of_a_prefix_comes_once_page_by_page(populated):
    stack, documents = populated
    key = create_key(stack, "searcher", "users:read")
    seen, times = pages(stack, key, "email=bulk-*")
    expected = sorted(document["email"] for document in documents if document["email"].startswith("bulk-"))
    assert len(seen) == len(set(seen)) == ACCOUNTS // 2
    assert seen == expected
    report("prefix bulk-* (10,000 accounts)", times)


def test_every_account_of_a_status_comes_once_page_by_page(populated):
    stack, documents = populated
    key = create_key(stack, "status-searcher", "users:read")
    seen, times = pages(stack, key, "status=pending_verification")
    expected = sorted(document["email"] for document in documents if document["status"] == "pending_verification")
    assert seen == expected and len(set(seen)) == ACCOUNTS // 4
    report("status pending_verification (5,000 accounts)", times)
    everyone, times = pages(stack, key, "email=*")
    assert len(everyone) == len(set(everyone)) == ACCOUNTS
    report("every account (20,000)", times)
    assert pages(stack, key, "email=MASS-00002@EXAMPLE.COM")[0] == ["mass-00002@example.com"]
