"""``python -m auth_service``: the API on waitress plus the auth side's queue threads."""

from __future__ import annotations

import logging
import signal
import threading
import time

from waitress.server import BaseWSGIServer, MultiSocketServer, TcpWSGIServer, create_server

from auth_service import bootstrap
from auth_service.config import Settings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 8.0


def listening_urls(server: MultiSocketServer | BaseWSGIServer) -> list[str]:
    """One URL per socket: a host name such as ``localhost`` may resolve to an IPv4 and an IPv6 address."""
    if isinstance(server, MultiSocketServer):
        addresses = [(str(host), port) for host, port in server.effective_listen]
    elif isinstance(server, TcpWSGIServer):
        host, port = server.getsockname()
        addresses = [(host, int(port))]
    else:
        return []
    return [f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}" for host, port in addresses]


def run(settings: Settings) -> int:
    system = bootstrap.build(settings)
    if settings.mongo_uri.startswith(bootstrap.IN_PROCESS_MONGO):
        log.warning("MONGO_URI=mongomock://: users live in this process only and vanish when it stops")
    system.start_background()
    server = create_server(
        system.app,
        host=settings.auth_host,
        port=settings.auth_port,
        threads=settings.auth_threads,
        ident="auth_service",
    )
    log.info("auth service listening", extra={"urls": listening_urls(server)})

    exit_code = 0

    def request_stop(signum, frame):
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        # waitress leaves its loop on SystemExit and lets in-flight requests finish.
        raise SystemExit(0)

    def watch_background():
        nonlocal exit_code
        while True:
            time.sleep(1)
            failed = system.failed()
            if failed:
                log.error("a background thread failed, shutting down", extra={"threads": failed})
                exit_code = 1
                signal.raise_signal(signal.SIGTERM)
                return

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    threading.Thread(target=watch_background, name="watchdog", daemon=True).start()
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        server.close()
        system.stop_background(SHUTDOWN_GRACE_SECONDS)
        log.info("auth service stopped")
    return exit_code
