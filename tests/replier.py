"""A stand-in for the worker's side of a request: a consumer on the code-submission queue that answers
each request on its ``reply_to``, as the worker does, after a delay or at a moment the test chooses."""

from __future__ import annotations

import json
import threading
import time

import pika
import pika.exceptions

from common.messaging import topology
from common.messaging.topology import REPLIES_EXCHANGE, Topology


class Replier(threading.Thread):
    """Answers ``{"n": <how many it received>}``; ``delays`` holds what to wait for before each answer, in
    order: seconds, or an event the test sets; ``bodies`` what to answer instead, in order (then the count
    again). ``answered`` holds the correlation id of each answer the broker has taken (confirmed)."""

    def __init__(
        self,
        url: str,
        routes: Topology,
        delays: tuple[float | threading.Event, ...] = (),
        bodies: tuple[bytes, ...] = (),
    ):
        super().__init__(name="test-replier", daemon=True)
        self._url = url
        self._routes = routes
        self._delays = list(delays)
        self._bodies = list(bodies)
        self.received: list[pika.BasicProperties] = []
        self.answered: list[str] = []
        self.ready = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self._url))
        channel = connection.channel()
        channel.confirm_delivery()
        queue = self._routes.confirm_email_code
        topology.declare(channel, self._routes.inbox_of(queue))
        channel.basic_consume(queue, self._on_request)
        self.ready.set()
        try:
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=0.1)
        except pika.exceptions.AMQPConnectionError:
            return  # the broker went away (a fault test restarts it): this replier is done
        connection.close()

    def _on_request(self, channel, method, properties, body: bytes) -> None:
        self.received.append(properties)
        if self._delays:
            delay = self._delays.pop(0)
            if isinstance(delay, threading.Event):
                delay.wait(30)
            else:
                time.sleep(delay)
        channel.basic_publish(
            exchange=REPLIES_EXCHANGE,
            routing_key=properties.reply_to,
            body=self._bodies.pop(0) if self._bodies else json.dumps({"n": len(self.received)}).encode(),
            properties=pika.BasicProperties(correlation_id=properties.correlation_id),
        )
        self.answered.append(properties.correlation_id)
        channel.basic_ack(method.delivery_tag)

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)
