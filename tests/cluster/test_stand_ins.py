"""The harness's pieces: one store shared by several auth processes, the balancer, the network and its partition."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

from devtools.cluster import PrivateNetwork, RoundRobinBalancer
from devtools.mailsink import free_port
from devtools.mongo_wire import MongoWireServer
from devtools.stack import http_json


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


# A host of the network: accepts connections on its address and closes them.
LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    server.accept()[0].close()
"""
# From another host: exits 0 if a connection to the address is made within a second.
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()"


def machine_network() -> tuple[str, str, str]:
    """What this machine's own namespace shows of its network: links, addresses and routes, and lo's qdisc."""
    shown = [subprocess.run(command, capture_output=True, text=True, timeout=10).stdout for command in (
        ["ip", "-br", "link"], ["ip", "-br", "addr"], ["tc", "qdisc", "show", "dev", "lo"]
    )]  # fmt: skip
    return shown[0], shown[1], shown[2]


def test_a_partition_cuts_one_host_off_from_the_others_and_this_machine_then_heals_leaving_nothing_behind():
    before = machine_network()
    network = PrivateNetwork(hosts=2).start()
    listener = None
    try:
        port = free_port()
        listener = subprocess.Popen(
            network.inside(1, sys.executable, "-c", LISTENER, network.address(1), str(port)),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None and listener.stdout.readline() == "listening\n"
        from_host_2 = network.inside(2, sys.executable, "-c", CONNECT, network.address(1), str(port))
        socket.create_connection((network.address(1), port), timeout=1).close()
        assert subprocess.run(from_host_2, timeout=30).returncode == 0
        # The network is the session's: this machine shows only its end of the link into the hub.
        assert machine_network()[2] == before[2]

        with network.cut_off(1) as cut:
            with pytest.raises(OSError):
                socket.create_connection((network.address(1), port), timeout=1)
            assert subprocess.run(from_host_2, capture_output=True, timeout=30).returncode != 0
            assert cut.dropped_packets() > 0
        socket.create_connection((network.address(1), port), timeout=5).close()
        assert subprocess.run(from_host_2, timeout=30).returncode == 0
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        network.stop()
    assert machine_network() == before
    assert not any(network.tag in name for name in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10
    ).stdout.split())  # fmt: skip
