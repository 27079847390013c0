"""Each auth process hears every ``user.sessions_revoked`` on a queue of its own.

The queue is exclusive and auto-deleted: it lives as long as this process's
connection, and every replica gets its own copy of each event (publish-
subscribe, not a work queue). On each (re)connection the sessions ended
while nobody listened are read from MongoDB once (``catch_up``), so a
replica that lost its connection still refuses their tokens.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import pika

from auth_service.service_layer.session_ends import EndedSessions
from common.messaging.connection import ConnectionThread
from common.messaging.envelope import Incoming, MalformedMessage
from common.messaging.messages import UserSessionsRevoked
from common.messaging.topology import SESSION_ENDS_QUEUE_PREFIX

log = logging.getLogger(__name__)


class SessionEndsListener(ConnectionThread):
    def __init__(self, url: str, events_exchange: str, ended: EndedSessions, catch_up: Callable[[], None]):
        super().__init__(url, name="session-ends")
        self._exchange = events_exchange
        self._ended = ended
        self._catch_up = catch_up

    def on_connected(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        channel.exchange_declare(self._exchange, exchange_type="topic", durable=True)
        queue = f"{SESSION_ENDS_QUEUE_PREFIX}{uuid.uuid4().hex}"
        channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
        channel.queue_bind(queue, self._exchange, routing_key=UserSessionsRevoked.TYPE)
        # Bound first, then read: an end written between the two is both read and heard, never missed.
        self._catch_up()
        channel.basic_qos(prefetch_count=100)
        channel.basic_consume(queue, self._on_message)

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        try:
            event = UserSessionsRevoked.parse(Incoming.parse(properties, body))
        except MalformedMessage as error:
            log.warning("session-end event not understood, dropped", extra={"error": str(error)})
        else:
            # "all" needs no entry: the account's token version rose with it (service_layer/session_ends.py).
            if not event.all_sessions:
                self._ended.add(event.session_ids)
        channel.basic_ack(method.delivery_tag)
