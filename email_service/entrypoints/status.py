"""The worker's small HTTP side: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for orchestrators."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common.metrics import CONTENT_TYPE_LATEST, CollectorRegistry, exposition

log = logging.getLogger(__name__)

Readiness = Callable[[], dict[str, str]]


class StatusServer:
    """Serves on its own daemon thread; binding happens in the constructor so a taken port fails at start."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, readiness: Readiness):
        handler = type("StatusHandler", (_StatusHandler,), {"registry": registry, "readiness": staticmethod(readiness)})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        # A short poll keeps shutdown quick; the worker must be gone within seconds of SIGTERM.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="status-server", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _StatusHandler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    readiness: Readiness
    server_version = "email_service"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, exposition(self.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send_json(200, {"status": "ok"})
        elif path == "/readyz":
            checks = self.readiness()
            ready = all(state == "up" for state in checks.values())
            self._send_json(200 if ready else 503, {"status": "ready" if ready else "unavailable", "checks": checks})
        else:
            self._send_json(404, {"error": "not_found", "message": "Try /metrics, /healthz or /readyz."})

    def _send_json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        # Scrapes and probes arrive every few seconds; keep them out of the INFO stream.
        log.debug("status request", extra={"detail": format % args})
