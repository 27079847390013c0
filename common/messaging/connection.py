"""Opening connections: heartbeats on, blocked connections bounded, capped back-off."""

from __future__ import annotations

import contextlib
import logging
import threading

import pika

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 30
SOCKET_TIMEOUT_SECONDS = 5
MAX_BACKOFF_SECONDS = 15.0


def parameters(url: str, client_name: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = HEARTBEAT_SECONDS
    params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT_SECONDS
    params.socket_timeout = SOCKET_TIMEOUT_SECONDS
    params.connection_attempts = 1
    params.client_properties = {"connection_name": client_name}
    return params


class Backoff:
    """Capped exponential back-off that an owner can interrupt by setting ``stop``."""

    def __init__(self, stop: threading.Event, initial: float = 0.5, cap: float = MAX_BACKOFF_SECONDS):
        self._stop = stop
        self._initial = initial
        self._cap = cap
        self._delay = initial

    def reset(self) -> None:
        self._delay = self._initial

    def wait(self) -> None:
        self._stop.wait(self._delay)
        self._delay = min(self._delay * 2, self._cap)


def wake(connection: pika.BlockingConnection | None) -> None:
    """Interrupt the owner thread's ``process_data_events`` so it notices a stop request."""
    if connection is None:
        return
    with contextlib.suppress(Exception):  # already closed: the owner notices the stop by itself
        connection.add_callback_threadsafe(lambda: None)


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    if connection is None or not connection.is_open:
        return
    try:
        connection.close()
    except Exception as error:  # the connection is being discarded anyway
        log.debug("closing connection failed: %r", error)
