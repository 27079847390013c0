"""Opening connections, the one back-off, and the base of every thread that owns a pika connection."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.utils import connection_workflow

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 30
SOCKET_TIMEOUT_SECONDS = 5
MAX_BACKOFF_SECONDS = 15.0
# A broker that is recovering, or several threads declaring one queue at once,
# can answer a declare with 404 "home node ... is down or inaccessible" for a
# moment; a few tries tell that apart from a real topology mismatch.
SETUP_NOT_FOUND_TRIES = 5
NOT_FOUND = 404

CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    # A handshake that timed out (stack timeout) reaches BlockingConnection's caller as it is,
    # not as an AMQPConnectionError: a broker too busy to answer is waited for, not fatal.
    connection_workflow.AMQPConnectorException,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


def node_urls(url: str) -> list[str]:
    """The node URLs of ``RABBITMQ_URL``: one URL, or a comma-separated list of one cluster's nodes."""
    return [part.strip() for part in url.split(",") if part.strip()]


def parameters(url: str, client_name: str) -> list[pika.URLParameters]:
    """One set of parameters per node; ``pika.BlockingConnection`` tries them in turn, so a
    connection (and every reconnection) lands on the first node that answers."""
    return [_node_parameters(node, client_name) for node in node_urls(url)]


def _node_parameters(url: str, client_name: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = HEARTBEAT_SECONDS
    params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT_SECONDS
    params.socket_timeout = SOCKET_TIMEOUT_SECONDS
    params.connection_attempts = 1
    params.client_properties = {"connection_name": client_name}
    return params


class Backoff:
    """Capped exponential back-off. ``sleep`` is how its owner waits: an interruptible
    ``Event.wait``, or a sleep that keeps a connection's heartbeats flowing."""

    def __init__(self, sleep: Callable[[float], object], initial: float = 0.5, cap: float = MAX_BACKOFF_SECONDS):
        self._sleep = sleep
        self._initial = initial
        self._cap = cap
        self._delay = initial

    @property
    def delay(self) -> float:
        """How long the next ``wait`` sleeps."""
        return self._delay

    def reset(self) -> None:
        self._delay = self._initial

    def wait(self) -> None:
        self._sleep(self._delay)
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


class ConnectionThread(threading.Thread):
    """A daemon thread that owns one pika connection: connect, serve until stopped, reconnect.

    A lost connection is reopened with capped back-off. A channel error (a
    topology mismatch, a bug) or any other failure stops the thread and is kept
    in ``failure``, so the process can exit visibly rather than limp on.
    Subclasses set up their channel in ``on_connected`` and may release what
    waits on the connection in ``on_disconnected``.
    """

    backoff_initial_seconds = 0.5
    # How long the thread waits for its connection's events before ``on_tick`` runs again.
    tick_seconds = 1.0

    def __init__(self, url: str, name: str, client_name: str | None = None):
        super().__init__(name=name, daemon=True)
        self._url = url
        self._client_name = client_name or name
        self._stopping = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    @property
    def connected(self) -> bool:
        return self.ready.is_set()

    def log_context(self) -> dict:
        return {}

    def on_connected(self, connection: pika.BlockingConnection) -> None:
        raise NotImplementedError

    def on_disconnected(self) -> None:
        """Called on this thread after every connection ends, before it is closed."""

    def on_tick(self) -> None:
        """Called on this thread, connected, at least every ``tick_seconds``."""

    def stop(self) -> None:
        """Ask the thread to finish what it has in hand and close; returns at once."""
        self._stopping.set()
        wake(self._connection)

    def run(self) -> None:
        backoff = Backoff(self._stopping.wait, initial=self.backoff_initial_seconds)
        setup_not_found = 0
        while not self._stopping.is_set():
            setting_up = True
            try:
                self._connection = pika.BlockingConnection(parameters(self._url, self._client_name))
                self.on_connected(self._connection)
                setting_up = False
                setup_not_found = 0
                self.ready.set()
                backoff.reset()
                log.info("broker connection up", extra=self.log_context())
                while not self._stopping.is_set():
                    self._connection.process_data_events(time_limit=self.tick_seconds)
                    self.on_tick()
            except CONNECTION_ERRORS as error:
                log.warning("broker connection lost, reconnecting", extra={**self.log_context(), "error": repr(error)})
            except pika.exceptions.AMQPChannelError as error:
                if setting_up and _is_not_found(error) and setup_not_found + 1 < SETUP_NOT_FOUND_TRIES:
                    setup_not_found += 1
                    log.warning(
                        "a queue is not available yet, setting up again",
                        extra={**self.log_context(), "error": repr(error), "try": setup_not_found},
                    )
                else:
                    log.error("channel error, thread stops", extra={**self.log_context(), "error": repr(error)})
                    self.failure = error
            except Exception as error:  # e.g. a republish the broker could not route: stop visibly
                log.exception("broker thread failed", extra=self.log_context())
                self.failure = error
            finally:
                self.ready.clear()
                self.on_disconnected()
                connection, self._connection = self._connection, None
                close_quietly(connection)
            if self.failure is not None:
                break
            if not self._stopping.is_set():
                backoff.wait()


def _is_not_found(error: pika.exceptions.AMQPChannelError) -> bool:
    return isinstance(error, pika.exceptions.ChannelClosed) and error.reply_code == NOT_FOUND
