"""Connections for requests that wait for a reply, each used by one request thread at a time.

A request (a code submission waiting for its verdict) is published and its
reply awaited on the thread that asks, on a connection lent to it for the
request: nothing is handed to another thread on the way out or back. Each
such hand-off is a thread wake-up, and on a machine whose cores are busy a
wake-up waits for a core. What that saves, what reaching into pika's channel
for its confirms costs, and what would let it go: docs/decisions/request-links.md.

Links are lent most recently used first, so a quiet service keeps one or two
warm and more open only while requests overlap; one idle for
``IDLE_SECONDS`` is closed. An idle link runs no heartbeats (nobody pumps its
connection between requests), so heartbeats are off and TCP keepalive finds
a peer that vanished; a link whose connection the broker closed is noticed
before anything is published on it, and the request goes out on a new one.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pika
import pika.exceptions

from auth_service.ports import BrokerUnavailable
from common.messaging import topology
from common.messaging.connection import CONNECTION_ERRORS, close_quietly, parameters
from common.messaging.consumer import publish
from common.messaging.envelope import Outgoing
from common.messaging.topology import Topology
from common.tracing import processing, publishing

log = logging.getLogger(__name__)

IDLE_SECONDS = 60.0
# A link used this recently is taken as open without reading its socket first (a read saved per request):
# a close in so short a gap costs the one request a 503, and the link is replaced.
FRESH_SECONDS = 1.0
CLIENT_NAME = "auth_service requests"
# Without heartbeats, keepalive probes are what notice a broker host that vanished.
KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}


class RequestLinkLost(Exception):
    """The link's connection was closed while it was idle: nothing was published on it."""


class PublisherConfirms:
    """The broker's confirms of this channel's publishes, taken as they come.

    pika's ``BlockingChannel`` offers confirms only as a ``basic_publish``
    that blocks until its own confirm, with no deadline: a broker that stopped
    answering would hold the request past its deadline. So confirm mode is
    switched on on the channel underneath (``BlockingChannel._impl``, pika's
    ``Channel``), without waiting for Select-Ok: its ack and nack callbacks run
    on the owner thread while it processes the connection's events.
    """

    def __init__(self, channel: pika.adapters.blocking_connection.BlockingChannel):
        self._published = 0
        self._acked_up_to = 0
        self._refused: set[int] = set()
        channel._impl.confirm_delivery(ack_nack_callback=self._on_confirm)
        channel.add_on_return_callback(self._on_returned)

    def next_publish(self) -> int:
        """The delivery tag of the publish about to be made."""
        self._published += 1
        return self._published

    def confirmed(self, tag: int) -> bool:
        return tag <= self._acked_up_to and tag not in self._refused

    def refused(self, tag: int) -> bool:
        return tag in self._refused

    def _on_confirm(self, frame) -> None:
        method = frame.method
        tags = range(self._acked_up_to + 1, method.delivery_tag + 1) if method.multiple else [method.delivery_tag]
        if isinstance(method, pika.spec.Basic.Nack):
            self._refused.update(tags)
        self._acked_up_to = max(self._acked_up_to, method.delivery_tag)

    def _on_returned(self, channel, method, properties, body: bytes) -> None:
        # Unroutable (mandatory): the broker returns it before its ack; every publish here is the latest one.
        self._refused.add(self._published)


class RequestLink:
    """One connection, channel and exclusive reply queue; used by one thread at a time."""

    def __init__(self, url: str, routes: Topology, clock: Callable[[], float] = time.monotonic):
        self._routes = routes
        self._clock = clock
        self._connection = pika.BlockingConnection(_parameters(url))
        try:
            self._channel = self._connection.channel()
            self._confirms = PublisherConfirms(self._channel)
            self._reply_queue = topology.declare_reply_queue(self._channel)
            self._channel.basic_consume(self._reply_queue, self._on_reply, auto_ack=True)
        except Exception:
            close_quietly(self._connection)
            raise
        self._awaited: str | None = None
        self._reply: bytes | None = None
        self.last_used = clock()

    def request(self, destination: str, message: Outgoing, deadline: float) -> bytes | None:
        """Publish ``message`` (its ``correlation_id`` set) and wait until ``deadline`` for its reply's body.

        ``None`` when no reply came but the broker confirmed the request: it is
        queued and will be answered later. ``BrokerUnavailable`` when it was
        refused or not confirmed in time (it may be lost); ``RequestLinkLost`` before
        publishing on a closed connection. Either error leaves the link unfit
        for another request.
        """
        if not self._connection.is_open:
            raise RequestLinkLost("closed")
        if self._clock() - self.last_used > FRESH_SECONDS:
            try:
                # A close by the broker while the link sat idle (late replies to earlier requests too).
                self._connection.process_data_events(time_limit=0)
            except CONNECTION_ERRORS as error:
                raise RequestLinkLost(type(error).__name__) from None
        self._awaited, self._reply = message.correlation_id, None
        tag = self._confirms.next_publish()
        try:
            with publishing(destination, message) as traced:
                publish(self._channel, self._routes, destination, replace(traced, reply_to=self._reply_queue))
            while self._reply is None:
                if self._confirms.refused(tag):
                    raise BrokerUnavailable("the broker refused the request")
                remaining = deadline - self._clock()
                if remaining <= 0:
                    if self._confirms.confirmed(tag):
                        return None
                    raise BrokerUnavailable("no confirmation in time")
                self._connection.process_data_events(time_limit=remaining)
        except (*CONNECTION_ERRORS, pika.exceptions.AMQPChannelError) as error:
            # Once confirmed, the request is queued and its verdict on its way.
            if self._confirms.confirmed(tag):
                return None
            raise BrokerUnavailable(type(error).__name__) from None
        finally:
            self._awaited = None
        self.last_used = self._clock()
        return self._reply

    def _on_reply(self, channel, method, properties, body: bytes) -> None:
        if properties.correlation_id != self._awaited:
            return  # the reply to a request that gave up waiting
        with processing(topology.REPLIES_EXCHANGE, properties.headers, properties.message_id):
            self._reply = body

    def close(self) -> None:
        close_quietly(self._connection)


class RequestLinks:
    """Request links lent to request threads, most recently used first."""

    def __init__(
        self,
        url: str,
        routes: Topology,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._url = url
        self._routes = routes
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._idle: list[RequestLink] = []
        self._lock = threading.Lock()
        self._closer = LinkCloser()

    def request(self, destination: str, message: Outgoing, deadline: float) -> dict | None:
        """As ``RequestLink.request``, on a lent link, with the reply read as JSON (``BrokerUnavailable`` if
        it is unreadable); a link found closed is replaced once."""
        for attempt in (1, 2):
            link = self._take()
            try:
                reply = link.request(destination, message, deadline)
            except RequestLinkLost:
                self._closer.close(link)
                if attempt == 2:
                    raise BrokerUnavailable("request links keep closing") from None
                continue
            except BaseException:
                self._closer.close(link)
                raise
            self._give_back(link)
            # Read once the link is back: an unreadable reply says nothing against the link.
            return None if reply is None else _reply_body(reply)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for link in idle:
            link.close()
        self._closer.stop()

    def _take(self) -> RequestLink:
        with self._lock:
            link = self._idle.pop() if self._idle else None
        if link is not None:
            return link
        try:
            return RequestLink(self._url, self._routes, self._clock)
        except (*CONNECTION_ERRORS, pika.exceptions.AMQPChannelError) as error:
            raise BrokerUnavailable(type(error).__name__) from None

    def _give_back(self, link: RequestLink) -> None:
        stale_before = self._clock() - self._idle_seconds
        with self._lock:
            self._idle.append(link)
            # The least recently used are at the bottom: close those a quiet spell left unused.
            stale = [idle for idle in self._idle if idle.last_used < stale_before]
            self._idle = [idle for idle in self._idle if idle.last_used >= stale_before]
        for idle in stale:
            self._closer.close(idle)


class LinkCloser(threading.Thread):
    """Closes discarded links off the request threads: closing waits for the broker's Close-Ok,
    which a broker that stopped answering never sends."""

    def __init__(self):
        super().__init__(name="request-link-closer", daemon=True)
        self._links: queue.SimpleQueue[RequestLink | None] = queue.SimpleQueue()
        self._running = False
        self._start_lock = threading.Lock()

    def close(self, link: RequestLink) -> None:
        with self._start_lock:
            if not self._running:
                self._running = True
                self.start()
        self._links.put(link)

    def stop(self) -> None:
        self._links.put(None)

    def run(self) -> None:
        while (link := self._links.get()) is not None:
            link.close()


def _parameters(url: str) -> list[pika.URLParameters]:
    nodes = parameters(url, CLIENT_NAME)
    for node in nodes:
        node.heartbeat = 0
        node.tcp_options = KEEPALIVE
    return nodes


def _reply_body(body: bytes) -> dict:
    try:
        reply = json.loads(body)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        log.error("unreadable reply from the worker")
        raise BrokerUnavailable("unreadable reply")
    return reply
