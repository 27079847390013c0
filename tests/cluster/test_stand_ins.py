"""The harness's pieces: one store shared by several auth processes, the balancer, the partition."""

from __future__ import annotations

import http.server
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

from devtools.cluster import PartitionUnavailable, RoundRobinBalancer, partitioned
from devtools.mongo_wire import MongoWireServer
from devtools.stack import free_port, http_json


@pytest.fixture
def store():
    server = MongoWireServer(free_port()).start()
    yield server
    server.stop()


def test_two_clients_of_the_wire_store_see_one_database(store):
    first, second = (pymongo.MongoClient(store.uri, w="majority", tz_aware=True)["auth"] for _ in range(2))
    first.users.create_index([("email", pymongo.ASCENDING)], unique=True, name="email_unique")
    now = datetime.now(UTC)
    first.users.insert_one({"_id": "u1", "email": "a@example.com", "due": now})
    with pytest.raises(DuplicateKeyError):
        second.users.insert_one({"_id": "u2", "email": "a@example.com"})
    claimed = second.users.find_one_and_update(
        {"due": {"$lte": now}}, {"$set": {"due": now + timedelta(seconds=30)}}, return_document=True
    )
    assert claimed is not None and claimed["_id"] == "u1"
    # The lease is seen by the other client: nothing is due for it now.
    assert first.users.find_one_and_update({"due": {"$lte": now}}, {"$set": {"due": now}}) is None
    assert first.users.update_one({"_id": "u9"}, {"$set": {"x": 1}}, upsert=True).upserted_id == "u9"
    assert second.users.count_documents({}) == 2
    assert second.users.delete_one({"_id": "u9"}).deleted_count == 1


class _Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f'{{"port": {self.server.server_address[1]}}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_balancer_takes_turns_and_skips_a_backend_that_is_down():
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = [server.server_address[1] for server in servers]
    balancer = RoundRobinBalancer(ports).start()
    try:
        url = f"http://127.0.0.1:{balancer.port}/"
        answered = [http_json("GET", url, headers={"Connection": "close"})[2]["port"] for _ in range(4)]
        assert sorted(answered) == sorted(ports * 2)
        servers[0].shutdown()
        servers[0].server_close()
        # Many clients at once: each connection still finds the live backend.
        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(lambda _: http_json("GET", url)[2]["port"], range(200)))
        assert set(answered) == {ports[1]}
    finally:
        balancer.stop()
        servers[1].shutdown()
        servers[1].server_close()


def test_a_partition_cuts_only_the_nodes_address_and_heals():
    cut_off = socket.create_server(("127.0.0.13", 0))
    everyone = socket.create_server(("127.0.0.1", 0))
    node = SimpleNamespace(address="127.0.0.13")
    try:
        with partitioned(node) as cut:
            with pytest.raises(OSError):
                socket.create_connection(cut_off.getsockname(), timeout=1)
            socket.create_connection(everyone.getsockname(), timeout=1).close()
            assert cut.held_packets() > 0
        socket.create_connection(cut_off.getsockname(), timeout=1).close()
    except PartitionUnavailable as error:
        pytest.skip(f"this machine cannot cut loopback traffic: {error}")
    finally:
        cut_off.close()
        everyone.close()
    with pytest.raises(PartitionUnavailable, match=r"127\.0\.0\.1"), partitioned(SimpleNamespace(address="127.0.0.1")):
        pass
