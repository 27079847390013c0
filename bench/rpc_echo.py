"""The other end of the raw RPC that /auth/confirm is held against: a pika consumer on a
quorum queue that answers every request on its ``reply_to`` at once, then acks.

    BENCH_QUEUE=... python -m bench.rpc_echo

``RawRpcClient`` is the caller's side, on the direct reply-to pseudo-queue as
the auth service's is. Neither uses publisher confirms: the reply proves the
request arrived, and this is the least an RPC over the broker can cost.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import pika

from bench.raw_consumer import consume_until_signalled

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
REPLY = b'{"type":"bench.rpc_reply","verdict":"invalid_code","attempts_left":3}'


def main() -> int:
    def on_request(channel, method, properties, body: bytes) -> None:
        channel.basic_publish(
            exchange="",
            routing_key=properties.reply_to,
            body=REPLY,
            properties=pika.BasicProperties(correlation_id=properties.correlation_id),
        )
        channel.basic_ack(method.delivery_tag)

    url = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F")
    consume_until_signalled(url, os.environ["BENCH_QUEUE"], on_request, prefetch=4)
    return 0


class RawRpcClient:
    def __init__(self, url: str, queue: str):
        self._queue = queue
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()
        self._channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
        self._answered: str | None = None

    def _on_reply(self, channel, method, properties, body: bytes) -> None:
        self._answered = properties.correlation_id

    def call(self, body: bytes, timeout: float = 5.0) -> float:
        """Seconds from publishing the request to holding its reply."""
        correlation_id = uuid.uuid4().hex
        started = time.perf_counter()
        self._channel.basic_publish(
            exchange="",
            routing_key=self._queue,
            body=body,
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                reply_to=DIRECT_REPLY_TO,
                correlation_id=correlation_id,
            ),
        )
        while self._answered != correlation_id:
            if time.perf_counter() - started > timeout:
                raise TimeoutError("no reply from the echo server")
            self._connection.process_data_events(time_limit=timeout)
        return time.perf_counter() - started

    def close(self) -> None:
        self._connection.close()


if __name__ == "__main__":
    sys.exit(main())
