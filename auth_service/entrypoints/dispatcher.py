"""``python -m auth_service webhooks``: the webhook dispatcher alone, until SIGTERM/SIGINT.

For a deployment that scales the deliveries apart from the API (run the API with
WEBHOOK_DISPATCHER=false then). It shares auth's MongoDB and broker; its metrics
are served on WEBHOOKS_METRICS_HOST:WEBHOOKS_METRICS_PORT.
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import start_http_server

from auth_service import bootstrap
from auth_service.config import Settings
from common.stopping import stop_on_signals

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 15.0


def run(settings: Settings) -> int:
    if settings.mongo_uri.startswith(bootstrap.IN_PROCESS_MONGO):
        print(
            "auth_service webhooks: MONGO_URI=mongomock:// lives in one process; the dispatcher needs auth's MongoDB",
            file=sys.stderr,
        )
        return 2
    system = bootstrap.build_webhook_dispatcher(settings)
    if settings.webhooks_metrics_port:
        try:
            start_http_server(settings.webhooks_metrics_port, settings.webhooks_metrics_host, system.registry)
        except OSError as error:
            log.error(f"cannot serve metrics: WEBHOOKS_METRICS_PORT={settings.webhooks_metrics_port} ({error})")
            return 1
    stop = stop_on_signals()
    bootstrap.start_all(system.background)
    log.info("webhook dispatcher started", extra={"queue": settings.webhooks_queue})
    exit_code = 0
    while not stop.wait(0.5):
        failed = bootstrap.failed_of(system.background)
        if failed:
            log.error("a dispatcher thread failed, shutting down", extra={"threads": failed})
            exit_code = 1
            break
    bootstrap.stop_all(system.background, SHUTDOWN_GRACE_SECONDS)
    log.info("webhook dispatcher stopped")
    return exit_code
