"""A RabbitMQ node of this test session's own: free ports, its own node name, data dir and config."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from port_for import get_port
from pytest_rabbitmq.factories.executor import RabbitMqExecutor

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQ_CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")


class _PrivateRabbitExecutor(RabbitMqExecutor):
    """pytest-rabbitmq's executor, pointed at a config file of its own.

    The machine's /etc/rabbitmq/rabbitmq.conf pins the listener to port 5672,
    which would override the free port this node is given."""

    extra_env: dict[str, str] = {}

    @property
    def envvars(self) -> dict[str, str]:
        return {**super().envvars, **self.extra_env}


@dataclass
class PrivateRabbitMQ:
    executor: RabbitMqExecutor
    port: int

    @property
    def url(self) -> str:
        return self.url_for("guest", "guest")

    def url_for(self, user: str, password: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/%2F"

    def stop(self) -> None:
        self.executor.stop()

    def start(self) -> None:
        self.executor.start()

    def ctl(self, *args: str) -> str:
        return self.executor.rabbitctl_output(*args)

    @contextlib.contextmanager
    def frozen(self):
        """The node stopped dead (SIGSTOP) inside the block: connections stay open, nothing is answered."""
        pid = int(self.ctl("eval", "os:getpid().").strip().strip('"'))
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


def start_private_rabbitmq(base: Path, config: str) -> PrivateRabbitMQ:
    """Start a node in ``base`` with ``config`` as its rabbitmq.conf; skips the test if RabbitMQ is not installed."""
    if not RABBITMQ_SERVER.exists():
        pytest.skip(f"this test needs rabbitmq-server at {RABBITMQ_SERVER}, which is not installed")
    config_path = base / "rabbitmq.conf"
    config_path.write_text(config)
    port = get_port(None)
    distribution_port = get_port(None, [port])
    executor = _PrivateRabbitExecutor(
        str(RABBITMQ_SERVER),
        "127.0.0.1",
        port,
        distribution_port,
        str(RABBITMQ_CTL),
        logpath=base / "logs",
        path=base,
        plugin_path=base,
    )
    executor.extra_env = {"RABBITMQ_CONFIG_FILE": str(config_path), "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1"}
    executor.start()
    return PrivateRabbitMQ(executor, port)
