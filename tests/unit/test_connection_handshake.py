"""ConnectionThread: a failed or timed-out handshake is retried with back-off, never fatal."""

from __future__ import annotations

import threading

import pika.exceptions
import pytest
from pika.adapters.utils import connection_workflow

from common.messaging import connection as connection_module
from common.messaging.connection import ConnectionThread


class Recording(ConnectionThread):
    def __init__(self):
        super().__init__("amqp://guest:guest@127.0.0.1:1/%2F", name="test-link")

    def on_connected(self, connection) -> None:
        self.stop()


@pytest.mark.parametrize(
    "handshake_error",
    [
        connection_workflow.AMQPConnectorStackTimeout("handshake timed out"),
        pika.exceptions.AMQPConnectionError("refused"),
        pika.exceptions.ProbableAuthenticationError("broker closed during handshake"),
        TimeoutError("timed out"),
        TimeoutError(),
    ],
    ids=["stack-timeout", "connection-error", "probable-authentication", "socket-timeout", "timeout"],
)
def test_a_failed_handshake_is_retried_with_backoff_not_fatal(monkeypatch, handshake_error):
    attempts: list[int] = []
    waits: list[float] = []
    connected = threading.Event()

    class FlakyConnection:
        def __init__(self, params):
            attempts.append(1)
            if len(attempts) < 3:
                raise handshake_error
            connected.set()

        def process_data_events(self, time_limit):
            pass

        is_open = False

        def add_callback_threadsafe(self, callback):
            callback()

    monkeypatch.setattr(connection_module.pika, "BlockingConnection", FlakyConnection)
    thread = Recording()
    real_wait = thread._stopping.wait
    monkeypatch.setattr(thread._stopping, "wait", lambda delay: waits.append(delay) or real_wait(0))
    thread.start()
    thread.join(10)
    assert connected.is_set() and len(attempts) == 3
    assert thread.failure is None
    assert waits == [0.5, 1.0]  # capped exponential back-off between the attempts
