"""The raw baseline: a minimal pika consumer doing the job of bench/peers.py per message.

One process, one thread, one connection, acks after the mail is accepted.
It keeps as many messages in flight as the worker does by default (4
consumers with a prefetch of 4 each), so that on a busy broker the wait
for the next delivery does not bound it.
It reads the email worker's account-creation messages from ``BENCH_QUEUE``
and stops on SIGTERM or SIGINT after the message in hand.

    BENCH_QUEUE=... SMTP_PORT=... python -m bench.raw_consumer
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable

import pika

from bench.peers import MailJob, PeerConfig


def consume_until_signalled(url: str, queue: str, on_message: Callable, prefetch: int) -> None:
    """Consume ``queue`` on one connection until SIGTERM or SIGINT; deliveries after that go back."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())

    def deliver(channel, method, properties, body: bytes) -> None:
        if stopping.is_set():
            channel.basic_nack(method.delivery_tag, requeue=True)
        else:
            on_message(channel, method, properties, body)

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=prefetch)
        channel.basic_consume(queue, deliver)
        while not stopping.is_set():
            connection.process_data_events(time_limit=0.5)
    finally:
        connection.close()


def main() -> int:
    config = PeerConfig.from_env()
    job = MailJob(config)

    def on_message(channel, method, properties, body: bytes) -> None:
        message = json.loads(body)
        job.run(properties.message_id, message["user_id"], message["email"], message["name"], message["requested_at"])
        channel.basic_ack(method.delivery_tag)

    try:
        consume_until_signalled(config.rabbitmq_url, config.queue, on_message, config.prefetch)
    finally:
        job.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
