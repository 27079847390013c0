"""Private servers of one cluster test session: three RabbitMQ nodes joined into one cluster, a
Redis primary with one replica watched by three Sentinels, and a round-robin TCP balancer.

Each RabbitMQ node runs in a network namespace of its own, joined to the others by a network the
session makes (``PrivateNetwork``), so that a partition cuts that network and nothing of the
machine's. Redis, Sentinel and the balancer listen on free loopback ports. Every process has its
own name and data directory, never the machine's shared RabbitMQ (5672) or Redis (6379); ``stop``
ends each process group, removes the network, and the caller removes the directories.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import random
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from devtools.mailsink import free_port
from devtools.tcp import ThreadedTcpServer

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQ_CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
EPMD = "/usr/bin/epmd"
IP = "/usr/sbin/ip"
# RFC 2544's range for benchmarking networks: the cluster's network takes a /24 of it that no route of
# this machine reaches already. Host n of the network is .(10 + n); this machine's end is .1.
NETWORK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
HOST_ADDRESS_BASE = 10
REDIS_SERVER = "/usr/bin/redis-server"
NODE_START_SECONDS = 180.0
MASTER_NAME = "codes"
# Nodes that lose sight of the others give up their queues' leadership; a node's loss is noticed
# within about net_ticktime (seconds).
RABBITMQ_CONFIG = """\
loopback_users.guest = false
cluster_partition_handling = pause_minority
net_ticktime = 10
"""


def _process_group_signal(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


class NetworkUnavailable(RuntimeError):
    """This machine will not make the cluster's network: not root, or no iproute2."""


class PartitionUnavailable(RuntimeError):
    """The network cannot cut a host off: tc refused the queueing discipline."""


def _ip(*args: str) -> str:
    if not Path(IP).exists():
        raise NetworkUnavailable(f"no {IP}: the cluster's network needs iproute2")
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetworkUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class PrivateNetwork:
    """A network of the session's own for ``hosts`` hosts, none of it on this machine's loopback.

    Each host is a network namespace whose ``eth0`` is one end of a veth pair; the other ends are
    ports of a bridge in a hub namespace, as are the far end of one more pair whose near end
    (``link``) is in this machine's namespace, so that processes here (the services, the tests,
    the benchmark) reach every host at its address. The bridge switches frames: nothing forwards
    or filters packets, and no setting of the machine changes. ``stop`` deletes the namespaces,
    and every link with them; a watchdog does it if this process dies first.
    """

    def __init__(self, hosts: int):
        if os.geteuid() != 0:
            raise NetworkUnavailable("only root makes network namespaces (ip netns add)")
        self.tag = uuid.uuid4().hex[:6]
        self.hosts = hosts
        self.subnet = _free_subnet()
        self.hub = f"cluster-{self.tag}-hub"
        self.link = f"cl-{self.tag}"
        self._watchdog: subprocess.Popen | None = None

    def namespace(self, host: int) -> str:
        return f"cluster-{self.tag}-{host}"

    def address(self, host: int) -> str:
        return str(self.subnet.network_address + HOST_ADDRESS_BASE + host)

    def port(self, host: int) -> str:
        """The host's port on the hub's bridge (the hub's end of its veth pair)."""
        return f"h{host}-{self.tag}"

    def inside(self, host: int, *argv: str) -> list[str]:
        """``argv`` as a command run in the host's namespace."""
        return [IP, "netns", "exec", self.namespace(host), *argv]

    def start(self) -> PrivateNetwork:
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG, str(os.getpid()), *self._teardown_commands()],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            _ip("netns", "add", self.hub)
            _ip("-n", self.hub, "link", "set", "lo", "up")
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            _ip("link", "add", self.link, "type", "veth", "peer", "name", "up0", "netns", self.hub)
            _ip("addr", "add", f"{self.subnet.network_address + 1}/{self.subnet.prefixlen}", "dev", self.link)
            _ip("link", "set", self.link, "up")
            _ip("-n", self.hub, "link", "set", "up0", "master", "br0", "up")
            for host in range(1, self.hosts + 1):
                namespace, port = self.namespace(host), self.port(host)
                _ip("netns", "add", namespace)
                _ip("-n", namespace, "link", "set", "lo", "up")
                _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
                _ip("-n", namespace, "addr", "add", f"{self.address(host)}/{self.subnet.prefixlen}", "dev", "eth0")
                _ip("-n", namespace, "link", "set", "eth0", "up")
        except BaseException:
            self.stop()
            raise
        return self

    def _teardown_commands(self) -> list[str]:
        # Deleting a namespace deletes its links and their veth peers, this machine's end too.
        namespaces = [self.namespace(host) for host in range(1, self.hosts + 1)] + [self.hub]
        return [f"{IP} netns del {namespace}" for namespace in namespaces] + [f"{IP} link del {self.link}"]

    def stop(self) -> None:
        for command in self._teardown_commands():
            subprocess.run(command.split(), capture_output=True, timeout=30)
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait(10)
            self._watchdog = None

    @contextlib.contextmanager
    def cut_off(self, host: int) -> Iterator[Cut]:
        """Inside the block, ``host`` is cut off from every other host and from this machine: every
        packet to it (its bridge port's egress, in the hub) and from it (its ``eth0``'s egress, in
        its namespace) is dropped by a ``blackhole`` queueing discipline. A peer sees silence, as
        across a broken switch, not a refusal: TCP retransmits until the block ends."""
        sides = [(self.hub, self.port(host)), (self.namespace(host), "eth0")]
        try:
            for namespace, device in sides:
                done = subprocess.run(
                    [IP, "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device, "root", "blackhole"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                if done.returncode != 0:
                    raise PartitionUnavailable(f"tc qdisc add dev {device} root blackhole: {done.stderr.strip()}")
            yield Cut(sides)
        finally:
            for namespace, device in sides:
                subprocess.run(
                    [IP, "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root"],
                    capture_output=True,
                    timeout=10,
                )


# The network's watchdog: once the process that made it is gone, whatever it left is deleted.
WATCHDOG = """
import os, subprocess, sys, time
owner = int(sys.argv[1])
while True:
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        break
    time.sleep(2)
for command in sys.argv[2:]:
    subprocess.run(command.split(), capture_output=True)
"""


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of ``NETWORK_RANGE`` that no address or route of this machine touches."""
    taken: list[ipaddress.IPv4Network] = []
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all")):
        with contextlib.suppress(KeyError, ValueError):  # "default" and the like: no network of their own
            taken.append(ipaddress.IPv4Network(route["dst"], strict=False))
    for entry in json.loads(_ip("-j", "-4", "addr", "show")):
        for address in entry.get("addr_info", []):
            taken.append(ipaddress.IPv4Network(f"{address['local']}/{address['prefixlen']}", strict=False))
    candidates = list(NETWORK_RANGE.subnets(new_prefix=24))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise NetworkUnavailable(f"every /24 of {NETWORK_RANGE} is taken on this machine")


@dataclass
class Cut:
    sides: list[tuple[str, str]]

    def dropped_packets(self) -> int:
        """Packets to or from the cut-off host that the cut dropped so far: proof it was real."""
        total = 0
        for namespace, device in self.sides:
            shown = subprocess.run(
                [IP, "netns", "exec", namespace, "tc", "-s", "qdisc", "show", "dev", device, "root"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            dropped = re.search(r"dropped (\d+)", shown)
            total += int(dropped.group(1)) if dropped else 0
        return total


@dataclass
class RabbitNode:
    """One node, alone in host ``index`` of the cluster's network: its AMQP listener, its Erlang
    distribution and its epmd are reached at that host's address, so that all its traffic can be cut
    (``partitioned``)."""

    base: Path
    short_name: str
    index: int
    port: int
    dist_port: int
    home: Path
    epmd_port: int
    network: PrivateNetwork
    process: subprocess.Popen | None = None
    epmd: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return self.network.address(self.index)

    @property
    def name(self) -> str:
        return f"{self.short_name}@{self.address}"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.address}:{self.port}/%2F"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            # One HOME for every node and rabbitmqctl: the shared Erlang cookie lives there.
            "HOME": str(self.home),
            # Not the machine's rabbitmq-env.conf, which pins the distribution to 127.0.0.1.
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_USE_LONGNAME": "true",
            # The epmd of the node's own namespace (every host of the network has one, on this port).
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODE_IP_ADDRESS": self.address,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
            # A node that fails to start writes its crash dump here, not into the working directory.
            "ERL_CRASH_DUMP": str(self.base / "erl_crash.dump"),
        }

    def start(self) -> RabbitNode:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(RABBITMQ_CONFIG)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        if self.epmd is None or self.epmd.poll() is not None:
            self.epmd = subprocess.Popen(
                self.network.inside(self.index, EPMD, "-port", str(self.epmd_port)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        with open(self.base / "server.out", "ab") as out:
            self.process = subprocess.Popen(
                self.network.inside(self.index, str(RABBITMQ_SERVER)),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def restart(self) -> None:
        """Start a killed node again, on a new distribution port: the old one may still be held by
        the dead node's closing connections (TIME_WAIT), which RabbitMQ's start-up check refuses.
        The other nodes find the new port through epmd, by the node's name."""
        self.dist_port = free_port()
        self.start().await_startup()

    def await_startup(self, timeout: float = NODE_START_SECONDS) -> None:
        """Until the node runs RabbitMQ; it is unknown to epmd for its first seconds, then booting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("await_startup", "--timeout", "30", timeout=60)
                return
            except RuntimeError:
                if self.process is not None and self.process.poll() is not None:
                    log = (self.base / "server.out").read_text()[-3000:]
                    raise RuntimeError(f"{self.name} exited:\n{log}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        result = subprocess.run(
            self.network.inside(self.index, str(RABBITMQ_CTL), "--longnames", "-n", self.name, *args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {result.stdout}{result.stderr}")
        return result.stdout

    def beam_pid(self) -> int:
        return int((self.base / "node.pid").read_text().strip())

    def kill(self) -> None:
        """SIGKILL the Erlang VM, as a crash or a lost machine would."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.beam_pid(), signal.SIGKILL)
        if self.process is not None:
            _process_group_signal(self.process, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        _process_group_signal(self.process, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(self.beam_pid(), signal.SIGKILL)

    def stop_epmd(self) -> None:
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.kill()
            self.epmd.wait(10)


@dataclass
class RabbitCluster:
    nodes: list[RabbitNode]
    network: PrivateNetwork

    @property
    def url(self) -> str:
        """RABBITMQ_URL as a cluster deployment writes it: every node, comma-separated."""
        return ",".join(node.url for node in self.nodes)

    def node_named(self, erlang_name: str) -> RabbitNode:
        return next(node for node in self.nodes if erlang_name == node.name)

    def leader_of(self, queue: str, among: list[RabbitNode] | None = None) -> RabbitNode:
        """The node that leads a quorum queue, as the cluster (or the nodes ``among`` it) reports it."""
        for node in among or self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                for line in node.ctl("list_queues", "-q", "--no-table-headers", "name", "leader").splitlines():
                    name, _, leader = line.partition("\t")
                    if name == queue:
                        return self.node_named(leader.strip())
        raise LookupError(f"no live node knows the leader of {queue}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            node.stop_epmd()
        self.network.stop()


def start_rabbit_cluster(base: Path, size: int = 3) -> RabbitCluster:
    home = base / "home"
    home.mkdir(parents=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex.upper())
    cookie.chmod(0o400)
    network = PrivateNetwork(size).start()
    # Each node is alone in its namespace: the ports need only differ from each other (a restarted node
    # takes a new distribution port) and from the epmd's, which every namespace runs on the same port.
    epmd_port = free_port()
    taken: list[int] = [epmd_port]
    nodes = []
    for index in range(1, size + 1):
        port, dist_port = free_port(), free_port()
        while dist_port == port or port in taken or dist_port in taken:
            port, dist_port = free_port(), free_port()
        taken += [port, dist_port]
        nodes.append(
            RabbitNode(
                base / f"node{index}",
                network.namespace(index),
                index,
                port,
                dist_port,
                home,
                epmd_port,
                network,
            )
        )
    cluster = RabbitCluster(nodes, network)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.await_startup()
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", nodes[0].name, timeout=120)
            node.ctl("start_app", timeout=120)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def partitioned(node: RabbitNode) -> Iterator[Cut]:
    """Inside the block, ``node`` is cut off from the other nodes and from its clients (its host of
    the cluster's network is, ``PrivateNetwork.cut_off``)."""
    with node.network.cut_off(node.index) as cut:
        yield cut


@dataclass
class RedisProcess:
    base: Path
    port: int
    args: list[str]
    process: subprocess.Popen | None = None

    def start(self) -> RedisProcess:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "server.out", "ab") as out:
            self.process = subprocess.Popen(
                [REDIS_SERVER, *self.args], cwd=self.base, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    log = (self.base / "server.out").read_text()
                    raise RuntimeError(f"redis on {self.port} did not start: {log}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class RedisSentinelGroup:
    """A primary, one replica, three Sentinels (quorum 2) watching them under ``MASTER_NAME``."""

    servers: list[RedisProcess]
    sentinels: list[RedisProcess]

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def master_port(self) -> int:
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                _, port = redis.Redis(port=sentinel.port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    MASTER_NAME
                )
                return int(port)
        raise LookupError("no Sentinel answers")

    def master(self) -> RedisProcess:
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()


def start_redis_sentinel_group(base: Path) -> RedisSentinelGroup:
    primary_port, replica_port = free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    primary = RedisProcess(base / "primary", primary_port, ["--port", str(primary_port), *common])
    replica = RedisProcess(
        base / "replica",
        replica_port,
        ["--port", str(replica_port), *common, "--replicaof", "127.0.0.1", str(primary_port)],
    )
    group = RedisSentinelGroup([primary, replica], [])
    try:
        primary.start()
        replica.start()
        for index in range(3):
            port = free_port()
            directory = base / f"sentinel{index}"
            directory.mkdir(parents=True)
            config = directory / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 2000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            group.sentinels.append(RedisProcess(directory, port, [str(config), "--sentinel"]).start())
    except BaseException:
        group.stop()
        raise
    return group


class RoundRobinBalancer(ThreadedTcpServer):
    """A few lines of TCP load balancing: each new connection goes to the next live backend; a
    backend that refuses the connection is skipped, as haproxy's health checks would."""

    def __init__(self, backends: list[int], port: int | None = None):
        super().__init__(port or free_port(), "balancer")
        self.backends = backends
        self._turn = itertools.count()

    def _backend(self) -> socket.socket | None:
        # One turn per connection: every backend is tried once from there, whatever other
        # connections take their turns meanwhile.
        first = next(self._turn)
        for offset in range(len(self.backends)):
            port = self.backends[(first + offset) % len(self.backends)]
            with contextlib.suppress(OSError):
                return socket.create_connection(("127.0.0.1", port), timeout=2)
        return None

    def serve(self, connection: socket.socket) -> None:
        backend = self._backend()
        if backend is None:
            return
        backend.settimeout(None)
        with backend, selectors.DefaultSelector() as selector:
            selector.register(connection, selectors.EVENT_READ, backend)
            selector.register(backend, selectors.EVENT_READ, connection)
            while not self.stopping:
                for key, _ in selector.select(timeout=0.5):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
