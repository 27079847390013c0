"""``python -m email_service``: consume until SIGTERM/SIGINT, finish the message in hand, exit 0."""

from __future__ import annotations

import logging

from common.stopping import stop_on_signals
from email_service import bootstrap
from email_service.config import Settings
from email_service.entrypoints.status import StatusServer

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 9.0


def run(settings: Settings) -> int:
    worker = bootstrap.build_worker(settings)
    consumers = worker.consumers
    status = None
    if settings.worker_metrics_port:
        try:
            status = StatusServer(
                settings.worker_metrics_host, settings.worker_metrics_port, worker.registry, worker.readiness
            )
        except OSError as error:
            # One line naming the setting: a second worker on one host needs a port of its own.
            log.error(
                f"cannot serve metrics: WORKER_METRICS_PORT={settings.worker_metrics_port} is taken or refused "
                f"({error.strerror or error}); give each worker on a host its own port, or 0 for none",
            )
            return 1
        status.start()
        log.info(
            "metrics and probes served", extra={"url": f"http://{settings.worker_metrics_host}:{status.port}/metrics"}
        )
    stop = stop_on_signals()
    for consumer in consumers:
        consumer.start()
    log.info("email worker started", extra={"queues": [c.name for c in consumers]})

    exit_code = 0
    while not stop.wait(0.5):
        failed = [c for c in consumers if c.failure is not None]
        if failed:
            log.error("a consumer failed, shutting down", extra={"consumers": [c.name for c in failed]})
            exit_code = 1
            break

    for consumer in consumers:
        consumer.stop()
    for consumer in consumers:
        consumer.join(SHUTDOWN_GRACE_SECONDS)
    worker.close()
    if status is not None:
        status.stop()
    log.info("email worker stopped")
    return exit_code
