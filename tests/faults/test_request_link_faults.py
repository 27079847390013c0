"""A request that waits for a reply, on the private broker while it is frozen and restarted.

A request goes out on the asking thread's lent link (auth_service/adapters/request_links.py). A
broker that stops answering (SIGSTOP: the connection stays open, nothing comes back) must cost the
request no more than its deadline, then a 503, as it did when a link thread carried it; and a link
the broker closed while it sat idle (a restart) must be replaced without the caller noticing.
"""

from __future__ import annotations

import time
import uuid

import pytest

from auth_service.adapters.rabbitmq import RabbitMessageBus
from auth_service.ports import BrokerUnavailable
from bench.workload import run_topology
from common.messaging.envelope import Outgoing
from common.messaging.topology import Topology
from devtools.stack import delete_run, unique_names
from tests.replier import Replier

DEADLINE_SECONDS = 1.0


def submission() -> Outgoing:
    return Outgoing(type="code.submitted", body={}, message_id=uuid.uuid4().hex, correlation_id=uuid.uuid4().hex)


def wait_until_ready(thread, timeout: float = 60.0) -> None:
    assert thread.ready.wait(timeout), f"{thread.name} did not come up"


def test_a_frozen_broker_costs_a_request_its_deadline_and_a_restart_costs_it_nothing(private_rabbitmq):
    names = unique_names("fault")
    routes = run_topology(names)
    bus = RabbitMessageBus(private_rabbitmq.url, routes, max_waiting_replies=4)
    replier = Replier(private_rabbitmq.url, routes)
    try:
        bus.start()
        wait_until_ready(bus)
        replier.start()
        wait_until_ready(replier)
        assert bus.request(routes.confirm_email_code, submission(), timeout=5) == {"n": 1}

        with private_rabbitmq.frozen():
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable, match="no confirmation in time"):
                bus.request(routes.confirm_email_code, submission(), timeout=DEADLINE_SECONDS)
            waited = time.monotonic() - started
        assert DEADLINE_SECONDS <= waited < DEADLINE_SECONDS + 1.0, f"the request waited {waited:.2f} s"

        # Thawed, the broker delivers what it was sent while frozen: the replier answers it (late, unread).
        assert _answered_eventually(bus, routes) in (2, 3)

        private_rabbitmq.stop()
        private_rabbitmq.start()
        # The restart closed every connection: the replier is gone, the bus's own link reconnects.
        replier.stop()
        replier = Replier(private_rabbitmq.url, routes)
        replier.start()
        wait_until_ready(replier)
        deadline = time.monotonic() + 60
        while not bus.connected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert bus.connected
        # The idle link was closed by the restart: the request goes out on a new one, at the first try.
        assert bus.request(routes.confirm_email_code, submission(), timeout=5) == {"n": 1}
    finally:
        replier.stop()
        bus.stop()
        bus.join(10)
        delete_run(private_rabbitmq.url, names)


def _answered_eventually(bus: RabbitMessageBus, routes: Topology) -> int:
    """The count the replier gives the first request answered after the thaw."""
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = bus.request(routes.confirm_email_code, submission(), timeout=5)
        except BrokerUnavailable:
            reply = None
        if reply is not None:
            return reply["n"]
        if time.monotonic() > deadline:
            raise AssertionError("no request was answered after the thaw")
        time.sleep(0.5)
