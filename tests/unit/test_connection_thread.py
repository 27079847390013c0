"""ConnectionThread: which broker answers end the thread and which are tried again."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest

from common.messaging import connection as connection_module
from common.messaging.connection import SETUP_NOT_FOUND_TRIES, ConnectionThread

HOME_NODE_DOWN = (
    "NOT_FOUND - home node 'rabbit@host' of durable queue 'q.retry.8s' in vhost '/' is down or inaccessible"
)


class FakeConnection:
    is_open = True

    def __init__(self, parameters):
        self.parameters = parameters

    def process_data_events(self, time_limit=None):
        raise AssertionError("the thread should have stopped before serving")

    def add_callback_threadsafe(self, callback):
        callback()

    def close(self):
        self.is_open = False


class SetupThread(ConnectionThread):
    """Fails its set-up with the given errors in turn, then stops itself once set up."""

    backoff_initial_seconds = 0.001

    def __init__(self, errors: list[Exception]):
        super().__init__("amqp://guest:guest@127.0.0.1:1/%2F", "setup-test")
        self.errors = errors
        self.setups = 0

    def on_connected(self, connection) -> None:
        self.setups += 1
        if self.errors:
            raise self.errors.pop(0)
        self._stopping.set()


@pytest.fixture(autouse=True)
def fake_connection(monkeypatch):
    monkeypatch.setattr(connection_module.pika, "BlockingConnection", FakeConnection)


def run_to_end(thread: ConnectionThread) -> None:
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_queue_briefly_not_found_at_set_up_is_declared_again():
    thread = SetupThread([pika.exceptions.ChannelClosedByBroker(404, HOME_NODE_DOWN)] * (SETUP_NOT_FOUND_TRIES - 1))
    run_to_end(thread)
    assert thread.failure is None
    assert thread.setups == SETUP_NOT_FOUND_TRIES


def test_a_queue_that_stays_not_found_stops_the_thread():
    errors = [pika.exceptions.ChannelClosedByBroker(404, HOME_NODE_DOWN)] * SETUP_NOT_FOUND_TRIES
    thread = SetupThread(list(errors))
    run_to_end(thread)
    assert isinstance(thread.failure, pika.exceptions.ChannelClosedByBroker)
    assert thread.setups == SETUP_NOT_FOUND_TRIES


def test_a_topology_mismatch_stops_the_thread_at_once():
    mismatch = pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type'")
    thread = SetupThread([mismatch])
    run_to_end(thread)
    assert thread.failure is mismatch
    assert thread.setups == 1


def test_a_lost_connection_is_reopened():
    thread = SetupThread([pika.exceptions.StreamLostError("connection reset")] * 3)
    run_to_end(thread)
    assert thread.failure is None
    assert thread.setups == 4
