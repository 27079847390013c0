"""``queue_depth``: what each service's /metrics says waits in its queues, read from the real broker."""

from __future__ import annotations

import pika
from prometheus_client import CollectorRegistry

from common.messaging.depths import QueueDepths
from common.messaging.topology import WorkQueue
from devtools.mailsink import free_port
from devtools.stack import unique_names
from tests.integration.conftest import RABBITMQ_URL


def depths(collector: QueueDepths) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    return {
        (sample.labels["queue"], sample.labels["kind"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "queue_depth"
    }


def test_the_depth_of_each_work_queue_and_its_dead_letters_with_absent_queues_left_out():
    names = unique_names("depth")
    present, absent = WorkQueue(names["ACCOUNT_CREATION_QUEUE"]), WorkQueue(names["CONFIRM_EMAIL_CODE_QUEUE"])
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    try:
        for queue, count in ((present.name, 3), (present.dead_letter_queue, 1)):
            channel.queue_declare(queue)
            for _ in range(count):
                channel.basic_publish("", queue, b"{}")
        collector = QueueDepths(RABBITMQ_URL, [present, absent], "test queue depths")
        assert depths(collector) == {(present.name, "work"): 3, (present.dead_letter_queue, "dead_letter"): 1}
    finally:
        for queue in (present.name, present.dead_letter_queue):
            channel.queue_delete(queue)
        connection.close()


def test_a_broker_that_does_not_answer_leaves_the_family_empty_rather_than_failing_the_scrape():
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    assert depths(QueueDepths(nowhere, [WorkQueue("anything")], "test queue depths")) == {}
