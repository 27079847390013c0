"""The Celery peer: the same job as the email worker's (bench/peers.py), as a Celery task.

Configured from the environment like the raw consumer (``BENCH_QUEUE`` and the
worker's own settings). Set up as a careful Celery user would for this job:
acks after the task (``task_acks_late``, the guarantee the project gives), no
result backend, JSON, a quorum queue like the project's, and remote control,
gossip, mingle and heartbeats off so that the peer declares no queue but its
own. The worker is started by bench/compare.py:

    python -m celery -A bench.celery_peer worker --pool prefork --concurrency 2 \
        --without-gossip --without-mingle --without-heartbeat

Only ``make bench`` installs Celery (requirements/bench.txt): nothing under
tests/ imports this module.
"""

from __future__ import annotations

import threading

from celery import Celery
from celery.worker.consumer import Consumer
from kombu import Exchange, Queue

from bench.peers import MailJob, PeerConfig

TASK_NAME = "bench.send_code"


class PeerConsumer(Consumer):
    """Celery's consumer without the native delayed-delivery step.

    On a quorum queue that step declares 28 shared ``celery_delayed_*`` quorum
    queues for countdown and ETA tasks; this peer sends none, and the benchmark
    leaves no queue behind on the shared broker.
    """

    class Blueprint(Consumer.Blueprint):
        default_steps = [step for step in Consumer.Blueprint.default_steps if not step.endswith(":DelayedDelivery")]


def work_queue(name: str) -> Queue:
    # The default exchange routes by queue name: no exchange of its own to declare and delete.
    return Queue(name, Exchange(""), routing_key=name, durable=True, queue_arguments={"x-queue-type": "quorum"})


def build_app(config: PeerConfig) -> Celery:
    app = Celery("bench_peer", broker=config.rabbitmq_url, set_as_current=False)
    app.conf.update(
        task_queues=[work_queue(config.queue)],
        task_default_queue=config.queue,
        task_default_exchange="",
        task_create_missing_queues=False,
        task_acks_late=True,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_consumer=f"{__name__}:PeerConsumer",
        broker_connection_retry_on_startup=True,
    )
    local = threading.local()

    @app.task(name=TASK_NAME, bind=True)
    def send_code(task, user_id: str, email: str, name: str | None, requested_at: float) -> None:
        # One job, so one Redis client and one kept SMTP connection, per pool process or thread.
        job = getattr(local, "job", None)
        if job is None:
            job = local.job = MailJob(config)
        job.run(task.request.id, user_id, email, name, requested_at)

    return app


app = build_app(PeerConfig.from_env())
