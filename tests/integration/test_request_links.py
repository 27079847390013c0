"""Requests that wait for a reply, on the real broker: each goes out and is answered on the asking
thread's lent link (auth_service/adapters/request_links.py), with the guarantees of the link thread
they replaced: a reply is taken at once, no reply in time is ``None`` once the broker confirmed the
request, a refused request is ``BrokerUnavailable`` at once, and a link is reused until it fails."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pika
import pytest

from auth_service.adapters.rabbitmq import RabbitMessageBus
from auth_service.ports import BrokerUnavailable
from bench.workload import run_topology
from common.messaging import topology
from common.messaging.envelope import Outgoing
from common.messaging.topology import Topology
from devtools.stack import delete_run, unique_names
from tests.integration.conftest import RABBITMQ_URL
from tests.replier import Replier
from tests.waiting import eventually


def submission() -> Outgoing:
    return Outgoing(type="code.submitted", body={}, message_id=uuid.uuid4().hex, correlation_id=uuid.uuid4().hex)


@pytest.fixture
def names():
    names = unique_names("it")
    yield names
    delete_run(RABBITMQ_URL, names)


@pytest.fixture
def routes(names) -> Topology:
    return run_topology(names)


@pytest.fixture
def bus(routes):
    bus = RabbitMessageBus(RABBITMQ_URL, routes, max_waiting_replies=4)
    bus.start()
    assert bus.ready.wait(15), "the broker link did not come up"
    yield bus
    bus.stop()
    bus.join(10)


@pytest.fixture
def replier(routes):
    started: list[Replier] = []

    def start(*delays: float | threading.Event, bodies: tuple[bytes, ...] = ()) -> Replier:
        replier = Replier(RABBITMQ_URL, routes, delays, bodies)
        replier.start()
        assert replier.ready.wait(15), "the replier did not come up"
        started.append(replier)
        return replier

    yield start
    for replier in started:
        replier.stop()


def test_a_request_gets_its_reply_and_the_next_goes_out_on_the_same_link(bus, routes, replier):
    answering = replier()
    assert bus.request(routes.confirm_email_code, submission(), timeout=5) == {"n": 1}
    assert bus.request(routes.confirm_email_code, submission(), timeout=5) == {"n": 2}
    first, second = answering.received
    assert first.reply_to == second.reply_to  # one connection and reply queue served both


def test_a_reply_that_comes_too_late_is_not_taken_for_the_next_request(bus, routes, replier):
    answer_now = threading.Event()
    answering = replier(answer_now)  # the first answer waits until the test lets it go
    late = submission()
    assert bus.request(routes.confirm_email_code, late, timeout=0.3) is None  # confirmed: queued
    answer_now.set()
    eventually(lambda: answering.answered == [late.correlation_id], "the late answer, in the link's reply queue")
    assert bus.request(routes.confirm_email_code, submission(), timeout=5) == {"n": 2}


def test_no_reply_in_time_is_none_once_the_broker_confirmed_the_request(bus, routes):
    # The worker's queue is there but nobody consumes it: the request is queued, its verdict would come later.
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        topology.declare(connection.channel(), routes.inbox_of(routes.confirm_email_code))
    finally:
        connection.close()
    started = time.monotonic()
    assert bus.request(routes.confirm_email_code, submission(), timeout=0.5) is None
    assert 0.5 <= time.monotonic() - started < 3


def test_a_request_no_queue_takes_is_refused_at_once(bus, routes):
    # The worker's queue was never declared: the broker returns the mandatory message.
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="refused"):
        bus.request(routes.confirm_email_code, submission(), timeout=5)
    assert time.monotonic() - started < 2.5


def test_a_link_closed_while_idle_is_replaced_before_anything_is_published(bus, routes, replier):
    answering = replier()
    assert bus.request(routes.confirm_email_code, submission(), timeout=5) == {"n": 1}
    [idle] = bus._request_links._idle
    idle._connection.close()  # as when the broker or the network closed it between requests
    assert bus.request(routes.confirm_email_code, submission(), timeout=5) == {"n": 2}
    assert len(answering.received) == 2  # nothing went out on the closed link
    assert answering.received[0].reply_to != answering.received[1].reply_to


def test_requests_at_once_each_get_their_own_reply(bus, routes, replier):
    replier(0.05, 0.05, 0.05, 0.05)
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: bus.request(routes.confirm_email_code, submission(), timeout=5), range(4)))
    assert sorted(reply["n"] for reply in replies) == [1, 2, 3, 4]


def test_an_unreadable_reply_is_unavailable_and_the_link_is_kept(bus, routes, replier):
    answering = replier(bodies=(b"not json",))
    with pytest.raises(BrokerUnavailable, match="unreadable"):
        bus.request(routes.confirm_email_code, submission(), timeout=5)
    assert bus.request(routes.confirm_email_code, submission(), timeout=5) == {"n": 2}
    first, second = answering.received
    assert first.reply_to == second.reply_to  # the reply was at fault, not the link
