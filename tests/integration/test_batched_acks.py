"""The consumer's batched acks on the real broker: every message handled is acked, none twice, with
fewer acks than messages, and a consumer started after it gets nothing again."""

from __future__ import annotations

import time

import pika

from common.messaging.consumer import Consumer, Result
from common.messaging.envelope import Outgoing
from common.messaging.topology import Topology
from devtools.stack import delete_run, unique_names
from tests.integration.conftest import RABBITMQ_URL

MESSAGES = 60


class CountingAcks(Consumer):
    """A consumer that counts the acks it sends (each covering a batch)."""

    acks = 0

    def _ack_settled(self) -> None:
        if self._settled is not None:
            self.acks += 1
        super()._ack_settled()


def consume(topology: Topology, queue: str, handled: list[str], prefetch: int) -> CountingAcks:
    def handler(message, publisher) -> Result:
        handled.append(message.message_id)
        return Result.ack()

    consumer = CountingAcks(url=RABBITMQ_URL, queue=queue, handler=handler, topology=topology, prefetch=prefetch)
    consumer.start()
    assert consumer.ready.wait(10), "the consumer did not connect"
    return consumer


def test_every_handled_message_is_acked_in_fewer_acks_and_none_comes_back():
    names = unique_names("acks")
    queue = names["ACCOUNT_CREATION_QUEUE"]
    topology = Topology(
        account_creation=queue,
        confirm_email_code=names["CONFIRM_EMAIL_CODE_QUEUE"],
        account_confirmed=names["ACCOUNT_CONFIRMED_QUEUE"],
    )
    handled: list[str] = []
    try:
        # The consumer declares its queue: start it once, stop it, then queue the messages for it.
        first = consume(topology, queue, handled, prefetch=8)
        first.stop()
        first.join(10)
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        channel = connection.channel()
        sent = [Outgoing(type="t", body={"n": n}) for n in range(MESSAGES)]
        for message in sent:
            channel.basic_publish("", queue, message.encoded_body(), message.properties())
        connection.close()

        consumer = consume(topology, queue, handled, prefetch=8)
        deadline = time.monotonic() + 30
        while len(handled) < MESSAGES and time.monotonic() < deadline:
            time.sleep(0.02)
        consumer.stop()
        consumer.join(10)
        assert sorted(handled) == sorted(message.message_id for message in sent)
        assert 0 < consumer.acks < MESSAGES

        # Had any ack been lost, the broker would hand its message to the next consumer.
        again = consume(topology, queue, handled, prefetch=8)
        time.sleep(1.0)
        again.stop()
        again.join(10)
        assert len(handled) == MESSAGES
    finally:
        delete_run(RABBITMQ_URL, names)
