"""The auth service's link to RabbitMQ: one connection, owned by one thread.

pika connections are not thread-safe, so request threads never touch it: they
hand a publish to the link thread with ``add_callback_threadsafe`` and wait on
a future. The link thread also pumps heartbeats and receives replies on the
direct reply-to pseudo-queue, so an RPC needs no queue of its own.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import pika

from auth_service.ports import BrokerUnavailable
from common.messaging import topology
from common.messaging.connection import CONNECTION_ERRORS, ConnectionThread
from common.messaging.envelope import Outgoing

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class RabbitMessageBus(ConnectionThread):
    def __init__(self, url: str, declare: list[str], retry_delays: tuple[int, ...] = topology.RETRY_DELAYS_SECONDS):
        super().__init__(url, name="rabbitmq-link", client_name="auth_service")
        self._declare = declare
        self._retry_delays = retry_delays
        self._channel = None
        self._replies: dict[str, Future] = {}
        self._replies_lock = threading.Lock()

    def publish(self, queue: str, message: Outgoing, timeout: float) -> None:
        self._run_on_link(lambda channel: _basic_publish(channel, queue, message), timeout)

    def request(self, queue: str, message: Outgoing, timeout: float) -> dict | None:
        """Publish and wait for the reply; ``None`` if none came within ``timeout``."""
        reply: Future = Future()
        correlation_id = message.correlation_id
        with self._replies_lock:
            self._replies[correlation_id] = reply
        try:
            addressed = Outgoing(
                type=message.type,
                body=message.body,
                message_id=message.message_id,
                request_id=message.request_id,
                reply_to=DIRECT_REPLY_TO,
                correlation_id=correlation_id,
            )
            self._run_on_link(lambda channel: _basic_publish(channel, queue, addressed), timeout)
            try:
                return reply.result(timeout)
            except FutureTimeout:
                return None
            except BrokerUnavailable:
                return None  # the link dropped after the publish was confirmed: the verdict is on its way
        finally:
            with self._replies_lock:
                self._replies.pop(correlation_id, None)

    def on_connected(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        channel.confirm_delivery()
        topology.declare(channel, self._declare, self._retry_delays)
        channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
        self._channel = channel

    def on_disconnected(self) -> None:
        self._channel = None
        self._fail_waiting_replies()

    def _on_reply(self, channel, method, properties, body: bytes) -> None:
        with self._replies_lock:
            waiting = self._replies.get(properties.correlation_id)
        if waiting is None or waiting.done():
            return
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if isinstance(reply, dict):
            waiting.set_result(reply)
        else:
            log.error("unreadable reply from the worker")

    def _run_on_link(self, work: Callable, timeout: float) -> None:
        if not self.connected:
            raise BrokerUnavailable("not connected")
        done: Future = Future()

        def on_link_thread() -> None:
            # The caller gave up waiting (and answered 503): do not publish behind its back.
            if not done.set_running_or_notify_cancel():
                return
            try:
                work(self._channel)
                done.set_result(None)
            except Exception as error:
                done.set_exception(error)
                if isinstance(error, CONNECTION_ERRORS):
                    raise

        try:
            self._connection.add_callback_threadsafe(on_link_thread)
            done.result(timeout)
        except FutureTimeout:
            done.cancel()  # too late if the link thread has started it; then only the confirm was late
            raise BrokerUnavailable("no confirmation in time") from None
        except BrokerUnavailable:
            raise
        except Exception as error:
            raise BrokerUnavailable(type(error).__name__) from None

    def _fail_waiting_replies(self) -> None:
        with self._replies_lock:
            waiting = list(self._replies.values())
        for future in waiting:
            if not future.done():
                future.set_exception(BrokerUnavailable("link lost"))


def _basic_publish(channel, queue: str, message: Outgoing) -> None:
    channel.basic_publish(
        exchange=topology.DEFAULT_EXCHANGE,
        routing_key=queue,
        body=message.encoded_body(),
        properties=message.properties(),
        mandatory=True,
    )
