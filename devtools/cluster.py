"""Private servers of one cluster test session: three RabbitMQ nodes joined into one cluster, a
Redis primary with one replica watched by three Sentinels, and a round-robin TCP balancer.

Every process listens on free loopback ports with its own node name and data directory, never the
machine's shared RabbitMQ (5672) or Redis (6379); ``stop`` ends each process group and the caller
removes the directories.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import selectors
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from devtools.stack import free_port
from devtools.tcp import ThreadedTcpServer

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQ_CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
EPMD = "/usr/bin/epmd"
# The nodes live on 127.0.0.11, .12, .13.
NODE_ADDRESS_BASE = 10
MAX_CUT_SECONDS = 150
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


@dataclass
class RabbitNode:
    """One node, on a loopback address of its own (127.0.0.<index>) for its AMQP listener and its
    Erlang distribution, both ways, so that all its traffic can be cut (``partitioned``)."""

    base: Path
    short_name: str
    index: int
    port: int
    dist_port: int
    home: Path
    epmd_port: int
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        # Never 127.0.0.1: a partition cuts every packet of the node's address, and 127.0.0.1 is everyone's.
        return f"127.0.0.{NODE_ADDRESS_BASE + self.index}"

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
            # The cluster's own epmd, listening on every node's address (the machine's listens on 127.0.0.1 only).
            "ERL_EPMD_PORT": str(self.epmd_port),
            # Connections it opens to other nodes leave from its own address as well.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                f"-kernel inet_dist_use_interface {{127,0,0,{NODE_ADDRESS_BASE + self.index}}} "
                f"-kernel inet_dist_connect_options [{{ip,{{127,0,0,{NODE_ADDRESS_BASE + self.index}}}}}]"
            ),
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
        with open(self.base / "server.out", "ab") as out:
            self.process = subprocess.Popen(
                [str(RABBITMQ_SERVER)], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
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
            [str(RABBITMQ_CTL), "--longnames", "-n", self.name, *args],
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


@dataclass
class RabbitCluster:
    nodes: list[RabbitNode]
    epmd: subprocess.Popen | None = None

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
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.kill()
            self.epmd.wait(10)


def start_rabbit_cluster(base: Path, size: int = 3) -> RabbitCluster:
    home = base / "home"
    home.mkdir(parents=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex.upper())
    cookie.chmod(0o400)
    tag = uuid.uuid4().hex[:6]
    epmd_port = free_port()
    taken: list[int] = [epmd_port]
    nodes = []
    for index in range(1, size + 1):
        port, dist_port = free_port(), free_port()
        while dist_port == port or port in taken or dist_port in taken:
            port, dist_port = free_port(), free_port()
        taken += [port, dist_port]
        nodes.append(
            RabbitNode(base / f"node{index}", f"cluster-{tag}-{index}", index, port, dist_port, home, epmd_port)
        )
    # Nodes register with epmd over 127.0.0.1 and look each other up on their own addresses.
    addresses = ",".join(["127.0.0.1", *(node.address for node in nodes)])
    epmd = subprocess.Popen(
        [EPMD, "-port", str(epmd_port), "-address", addresses],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster = RabbitCluster(nodes, epmd)
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


CLASS = ("class", "add", "dev", "lo", "parent", "1:", "classid")
FILTER = ("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32")


class PartitionUnavailable(RuntimeError):
    """This machine cannot cut loopback traffic (no tc, or a root qdisc already on lo)."""


@dataclass
class Cut:
    tc: str

    def held_packets(self) -> int:
        """Packets to or from the cut-off node that the cut held or dropped so far: proof it was real."""
        shown = subprocess.run(
            [self.tc, "-s", "class", "show", "dev", "lo", "classid", "1:2"], capture_output=True, text=True, timeout=10
        ).stdout
        backlog = re.search(r"backlog \S+ (\d+)p", shown)
        dropped = re.search(r"dropped (\d+)", shown)
        sent = re.search(r"Sent \d+ bytes (\d+) pkt", shown)
        return sum(int(found.group(1)) for found in (backlog, dropped, sent) if found)


@contextlib.contextmanager
def partitioned(node: RabbitNode, tc: str = "tc") -> Iterator[Cut]:
    """Inside the block, ``node`` is cut off from the other nodes and from its clients: every packet
    from or to its own loopback address goes into an htb class of 8 bit/s, which holds it until
    the block ends and drops it then (this kernel has no tc action modules to drop outright, nor
    netem). Other loopback traffic passes through the default class untouched."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([tc, *args], capture_output=True, text=True, timeout=10)

    if node.address == "127.0.0.1":
        raise PartitionUnavailable("the node is on 127.0.0.1, which every process on this machine uses")
    shown = run("qdisc", "show", "dev", "lo")
    if shown.returncode != 0 or "noqueue" not in shown.stdout:
        raise PartitionUnavailable(f"lo is not as expected for a partition: {shown.stdout}{shown.stderr}".strip())
    steps = [
        ("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1"),
        # Everything else: 10 Gbit/s with a burst of its own (a rate too high for htb computes a
        # zero burst and throttles every packet on the machine's loopback).
        (*CLASS, "1:1", "htb", "rate", "10gbit", "burst", "4mb", "cburst", "4mb"),
        (*CLASS, "1:2", "htb", "rate", "8bit", "ceil", "8bit", "burst", "1", "cburst", "1"),
        *((*FILTER, "match", "ip", side, f"{node.address}/32", "flowid", "1:2") for side in ("src", "dst")),
    ]
    # Heals by itself after MAX_CUT_SECONDS even if this process dies or hangs: a cut left on lo
    # would slow the machine's loopback for everyone.
    watchdog = subprocess.Popen(
        ["/bin/sh", "-c", f"sleep {MAX_CUT_SECONDS}; {tc} qdisc del dev lo root"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for step in steps:
            done = run(*step)
            if done.returncode != 0:
                raise PartitionUnavailable(f"tc {' '.join(step)}: {done.stderr.strip()}")
        passing = run("class", "show", "dev", "lo", "classid", "1:1").stdout
        if " burst 0b" in passing:  # the rest of the machine's loopback would crawl: never leave it so
            raise PartitionUnavailable(f"the class every other packet takes has no burst: {passing.strip()}")
        yield Cut(tc)
    finally:
        _process_group_signal(watchdog, signal.SIGKILL)  # its sleep too
        watchdog.wait()
        run("qdisc", "del", "dev", "lo", "root")


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
