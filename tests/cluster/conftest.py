"""One private cluster for the whole cluster suite, started once and reused by every fault row.

Three RabbitMQ nodes, a Redis primary with a replica and three Sentinels, one shared store for the
auth replicas (devtools/mongo_wire.py: there is no MongoDB server on this machine), two auth
replicas behind a round-robin balancer and two workers. The RabbitMQ nodes live in a network of
the session's own (network namespaces, devtools/cluster.py), everything else on free loopback
ports. Everything is stopped, its network and its data removed when the session ends, also when a
test failed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from devtools.cluster import RABBITMQ_SERVER, NetworkUnavailable
from tests.cluster.harness import ClusterStack

FIGURES: list[dict] = []


@pytest.fixture(scope="session")
def cluster():
    if not RABBITMQ_SERVER.exists():
        pytest.skip(f"the cluster suite needs rabbitmq-server at {RABBITMQ_SERVER}, which is not installed")
    base = Path(tempfile.mkdtemp(prefix="cluster-suite-"))
    stack = ClusterStack(base)
    try:
        try:
            stack.start()
        except NetworkUnavailable as error:
            pytest.skip(f"the cluster suite puts its RabbitMQ nodes in network namespaces of its own: {error}")
        yield stack
    finally:
        with contextlib.suppress(Exception):
            stack.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def record_figures():
    return FIGURES.append


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.section("cluster fault figures")
    columns = list(FIGURES[0])
    terminalreporter.write_line(" | ".join(columns))
    for figures in FIGURES:
        terminalreporter.write_line(" | ".join(str(figures.get(column, "")) for column in columns))
    basetemp = config._tmp_path_factory.getbasetemp() if hasattr(config, "_tmp_path_factory") else None
    if basetemp is not None:
        path = Path(basetemp) / "cluster-figures.json"
        path.write_text(json.dumps(FIGURES, indent=2))
        terminalreporter.write_line(f"(also written to {path})")
