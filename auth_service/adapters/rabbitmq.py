"""The auth service's link to RabbitMQ: one connection for publishing, owned by one thread.

pika connections are not thread-safe, so request threads never touch it: they
hand a publish to the link thread with ``add_callback_threadsafe`` and wait on
a future, or leave one it does not wait for in a queue the link thread
drains at its next tick. Each future is settled by the broker's publisher
confirm of its message (``LinkConfirms``); the link thread does not wait for
one confirm before sending the next publish, so publishes from concurrent
requests are in flight together. The link thread also pumps heartbeats. A request that waits for a
reply (a code submission) goes out on a connection of its own instead, lent
to the request thread for the request (``request_links``), so that neither
the request nor its reply changes threads on the way.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from queue import Empty, SimpleQueue
from typing import Any

import pika

from auth_service.adapters.request_links import RequestLinks
from auth_service.ports import BrokerUnavailable
from common.messaging import topology
from common.messaging.connection import CONNECTION_ERRORS, ConnectionThread
from common.messaging.consumer import publish
from common.messaging.envelope import Outgoing
from common.messaging.topology import Topology
from common.tracing import publishing, requesting

log = logging.getLogger(__name__)

# A reply normally comes within milliseconds: a wait older than this means the replier is behind.
SLOW_REPLY_SECONDS = 1.0
# On a stop, how long the link waits for the confirms of what it has sent before failing their requests.
STOP_CONFIRMS_SECONDS = 2.0


class ReplyWaits:
    """Slots for requests waiting for a reply, each of which holds a server thread while it waits.

    When every slot is taken, a newcomer waits for one only while replies are
    still coming: as long as the oldest wait is younger than ``slow_after``, a
    slot will free soon (a burst). Once it is older, the replier is behind and
    the newcomer is refused at once, so that the server's other threads stay
    free for everything else.
    """

    def __init__(self, slots: int, slow_after: float = SLOW_REPLY_SECONDS, clock=time.monotonic):
        self._slots = slots
        self._slow_after = slow_after
        self._clock = clock
        self._started: dict[object, float] = {}
        self._changed = threading.Condition()

    def take(self) -> object | None:
        """A slot's token, or None if every slot is held by a wait older than ``slow_after``."""
        with self._changed:
            while len(self._started) >= self._slots:
                patience = min(self._started.values()) + self._slow_after - self._clock()
                if patience <= 0:
                    return None
                self._changed.wait(patience)
            token = object()
            self._started[token] = self._clock()
            return token

    def give_back(self, token: object) -> None:
        with self._changed:
            del self._started[token]
            self._changed.notify()


class LinkConfirms:
    """The broker's confirms of the link channel's publishes, several in flight, each settling its future.

    pika's ``BlockingChannel`` offers confirms only as a ``basic_publish`` that
    blocks until its own confirm, so a link thread using it sends one publish
    per confirm round trip. Instead confirm mode is switched on on the channel
    underneath (``BlockingChannel._impl``, as ``request_links.PublisherConfirms``
    does), whose acks, nacks and returns call back on the link thread in the
    order their frames arrive: a returned (unroutable) message's return comes
    before its ack. docs/decisions/link-confirms.md.
    """

    def __init__(self, channel: pika.adapters.blocking_connection.BlockingChannel):
        self._published = 0
        # By delivery tag, in publishing order: each publish's future and its message id.
        self._waiting: dict[int, tuple[Future, str | None]] = {}
        # The waiting publishes' tags by message id, oldest first: a relay's republish can share an id with
        # a publish still in flight, and a return names the message, not the tag.
        self._tags_of: dict[str | None, deque[int]] = {}
        self._returned: set[int] = set()
        # Why the broker closed the channel, if it did (a publish to an exchange that is gone).
        self.closed_by_broker: pika.exceptions.ChannelClosedByBroker | None = None
        channel._impl.confirm_delivery(ack_nack_callback=self._on_confirm)
        channel._impl.add_on_return_callback(self._on_returned)
        channel._impl.add_on_close_callback(self._on_closed)

    def expect(self, message_id: str | None, done: Future) -> int:
        """The publish about to be sent on the channel, whose confirm settles ``done``; returns its tag.

        Called before the publish, not after: its confirm can arrive, and be handled, while the publish
        is still flushing its frames."""
        self._published += 1
        self._waiting[self._published] = (done, message_id)
        self._tags_of.setdefault(message_id, deque()).append(self._published)
        return self._published

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def withdraw(self, tag: int) -> None:
        """The publish expected last did not leave (it failed before its frames were sent)."""
        if tag == self._published and tag in self._waiting:
            self._settled(tag)
            self._published -= 1

    def fail_all(self, error: Exception) -> None:
        """The channel is gone: no confirm will come for what still waits."""
        waiting, self._waiting = self._waiting, {}
        self._tags_of.clear()
        self._returned.clear()
        for done, _ in waiting.values():
            if not done.done():
                done.set_exception(error)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        if method.multiple:
            tags = [tag for tag in self._waiting if tag <= method.delivery_tag]
        else:
            tags = [method.delivery_tag] if method.delivery_tag in self._waiting else []
        refused = isinstance(method, pika.spec.Basic.Nack)
        for tag in tags:
            returned = tag in self._returned
            done = self._settled(tag)
            if refused:
                done.set_exception(BrokerUnavailable("the broker refused the message"))
            elif returned:
                done.set_exception(BrokerUnavailable("no queue is bound for the message"))
            else:
                done.set_result(None)

    def _on_returned(self, channel, method, properties, body: bytes) -> None:
        # Returns come in publishing order, each before its own ack: the oldest of the id's publishes
        # not returned yet is the one.
        for tag in self._tags_of.get(properties.message_id, ()):
            if tag not in self._returned:
                self._returned.add(tag)
                return

    def _on_closed(self, _channel, reason: Exception) -> None:
        # A closed channel confirms nothing more.
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            self.closed_by_broker = reason
        self.fail_all(BrokerUnavailable(str(reason)))

    def _settled(self, tag: int) -> Future:
        """Forget a publish (confirmed, refused or withdrawn); its future."""
        done, message_id = self._waiting.pop(tag)
        self._returned.discard(tag)
        tags = self._tags_of[message_id]
        tags.remove(tag)
        if not tags:
            del self._tags_of[message_id]
        return done


class RabbitMessageBus(ConnectionThread):
    # Publishes left for later (``publish_soon``) wait at most this long.
    tick_seconds = 0.1

    def __init__(
        self,
        url: str,
        routes: Topology,
        *,
        max_waiting_replies: int,
        slow_reply_seconds: float = SLOW_REPLY_SECONDS,
    ):
        super().__init__(url, name="rabbitmq-link", client_name="auth_service")
        self._routes = routes
        self._waits = ReplyWaits(max_waiting_replies, slow_reply_seconds)
        self._request_links = RequestLinks(url, routes)
        self._channel = None
        self._confirms: LinkConfirms | None = None
        self._later: SimpleQueue[tuple[str, Outgoing, Future]] = SimpleQueue()

    def publish(self, queue: str, message: Outgoing, timeout: float) -> None:
        # The span is the caller's (a request thread): the link thread only sends what it is handed.
        with publishing(queue, message) as traced:
            self._wait(self._start_on_link(lambda done: self._send(queue, traced, done)), timeout)

    def publish_soon(self, queue: str, message: Outgoing) -> Future:
        """Left for the link thread to publish at its next tick (within ``tick_seconds``), or before its
        next publish, whichever comes first: waking it now would have it contend for the GIL with the
        request that is still answering (docs/decisions/tick-publishing.md)."""
        if not self.connected:
            raise BrokerUnavailable("not connected")
        done: Future = Future()
        with publishing(queue, message) as traced:
            self._later.put((queue, traced, done))
        return done

    def on_link(self, work: Callable[[Any], object], timeout: float) -> None:
        """Run ``work(channel)`` on the link's channel (a declaration, a binding) and wait for it;
        ``BrokerUnavailable`` if the link is down or it did not finish within ``timeout``."""
        self._wait(self._start_on_link(lambda done: _run(work, self._channel, done)), timeout)

    def on_tick(self) -> None:
        confirms = self._confirms
        if confirms is not None and confirms.closed_by_broker is not None and not self._stopping.is_set():
            # The broker closed the channel (a publish to an exchange deleted since auth declared it): the
            # connection is up, but nothing can be published on it any more. Raised as the channel error it
            # is, the thread stops and the process exits visibly instead of answering 503 to every publish;
            # started again, it declares its topology anew.
            raise confirms.closed_by_broker
        self._publish_later()

    def _publish_later(self) -> None:
        """Publish what ``publish_soon`` left, in the order it was left; on the link thread."""
        while True:
            try:
                queue, message, done = self._later.get_nowait()
            except Empty:
                return
            self._send(queue, message, done)

    def _send(self, queue: str, message: Outgoing, done: Future) -> None:
        """Publish on the link thread; ``done`` is settled once the broker confirms it (``LinkConfirms``)."""
        # The caller gave up waiting (and answered 503): do not publish behind its back.
        if not done.set_running_or_notify_cancel():
            return
        confirms = self._confirms
        if confirms is None:
            done.set_exception(BrokerUnavailable("not connected"))
            return
        tag = confirms.expect(message.message_id, done)
        try:
            publish(self._channel, self._routes, queue, message)
        except Exception as error:
            confirms.withdraw(tag)
            if not done.done():
                done.set_exception(error)
            if isinstance(error, CONNECTION_ERRORS):
                raise

    def request(self, queue: str, message: Outgoing, timeout: float) -> dict | None:
        """Publish and wait for the reply; ``None`` if none came within ``timeout`` but the broker
        confirmed the request (it will be answered later).

        Raises ``BrokerUnavailable`` without publishing anything when the broker link is down, or
        when ``max_waiting_replies`` requests are already waiting and the replier is behind (see
        ``ReplyWaits``); and when the request was refused or not confirmed in time.
        """
        if not self.connected:
            raise BrokerUnavailable("not connected")
        slot = self._waits.take()
        if slot is None:
            raise BrokerUnavailable("too many requests waiting for a slow reply")
        try:
            with requesting(queue):
                return self._request(queue, message, timeout)
        finally:
            self._waits.give_back(slot)

    def _request(self, queue: str, message: Outgoing, timeout: float) -> dict | None:
        if message.correlation_id is None:
            message = replace(message, correlation_id=uuid.uuid4().hex)
        return self._request_links.request(queue, message, time.monotonic() + timeout)

    def stop(self) -> None:
        super().stop()
        self._request_links.close()

    def on_connected(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        confirms = LinkConfirms(channel)
        topology.declare(channel, self._routes.auth)
        self._channel, self._confirms = channel, confirms

    def on_disconnected(self) -> None:
        confirms, self._confirms, self._channel = self._confirms, None, None
        if confirms is None:
            return
        connection = self._connection
        if self._stopping.is_set() and connection is not None and connection.is_open:
            # A stop, not a loss: what was sent is confirmed within moments, so its requests need not fail.
            deadline = time.monotonic() + STOP_CONFIRMS_SECONDS
            try:
                while confirms.waiting and time.monotonic() < deadline:
                    connection.process_data_events(time_limit=0.05)
            except Exception:  # whatever ends the wait, what is left fails below and the connection closes
                log.warning("stopping without every publisher confirm", exc_info=True)
        confirms.fail_all(BrokerUnavailable("the broker link was lost before its confirm"))

    def _wait(self, done: Future, timeout: float) -> None:
        try:
            done.result(timeout)
        except FutureTimeout:
            done.cancel()  # too late if the link thread has started it; then only the confirm was late
            raise BrokerUnavailable("no confirmation in time") from None
        except BrokerUnavailable:
            raise
        except Exception as error:
            raise BrokerUnavailable(type(error).__name__) from None

    def _start_on_link(self, work: Callable[[Future], None]) -> Future:
        """Hand ``work`` to the link thread with the future it settles (a publish: once confirmed)."""
        connection = self._connection
        if connection is None or not self.connected:
            raise BrokerUnavailable("not connected")
        done: Future = Future()

        def on_link_thread() -> None:
            # Publishes left for later go first: one process's publishes leave in the order they were made.
            self._publish_later()
            work(done)

        try:
            connection.add_callback_threadsafe(on_link_thread)
        except Exception as error:
            raise BrokerUnavailable(type(error).__name__) from None
        return done


def _run(work: Callable, channel, done: Future) -> None:
    """Run work handed to the link thread (a declaration, a binding) and settle its future; a lost
    connection is raised on."""
    # The caller gave up waiting (and answered 503): do not run it behind its back.
    if not done.set_running_or_notify_cancel():
        return
    try:
        work(channel)
        done.set_result(None)
    except Exception as error:
        done.set_exception(error)
        if isinstance(error, CONNECTION_ERRORS):
            raise
