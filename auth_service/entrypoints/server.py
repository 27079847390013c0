"""``python -m auth_service``: the API on waitress plus the auth side's queue threads.

waitress is the edge: it decides, before Flask sees a request, who the client
is behind a proxy, how large a body may be, how many connections are held and
for how long an idle one is kept. docs/security.md ("Hardening against an attack from outside")
explains each choice.
"""

from __future__ import annotations

import json
import logging
import resource
import signal
import threading
import time
from typing import cast

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer, TcpWSGIServer, create_server
from waitress.task import ErrorTask

from auth_service import bootstrap
from auth_service.config import Settings
from auth_service.entrypoints.http import errors, security_headers

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 8.0
# Descriptors besides the client connections: the listening socket, MongoDB, RabbitMQ, Redis, logs.
SPARE_DESCRIPTORS = 64


def server_options(settings: Settings) -> dict:
    """waitress's adjustments, from the settings."""
    return _listener(settings, settings.auth_host, settings.auth_port, settings.auth_threads, "auth_service")


def admin_server_options(settings: Settings) -> dict:
    """The admin listener's: its own address and threads, the public listener's edge (docs/admin.md)."""
    return _listener(settings, settings.admin_host, settings.admin_port, settings.admin_threads, "auth_service admin")


def _listener(settings: Settings, host: str, port: int, threads: int, ident: str) -> dict:
    return {"host": host, "port": port, "threads": threads, "ident": ident, **_edge_options(settings)}


def _edge_options(settings: Settings) -> dict:
    options: dict[str, object] = {
        "connection_limit": settings.auth_connection_limit,
        "channel_timeout": settings.auth_channel_timeout_seconds,
        "cleanup_interval": settings.auth_cleanup_interval_seconds,
        # select() cannot watch descriptors numbered 1024 and above, which a high connection limit reaches.
        "asyncore_use_poll": True,
        # waitress refuses a Content-Length at or over this value as soon as the headers are in, without
        # reading the body; chunked bodies are cut off when they reach it. The application allows
        # MAX_BODY_BYTES itself, hence one more.
        "max_request_body_size": settings.max_body_bytes + 1,
        # Forwarding headers from anyone but the trusted proxy are dropped before the application sees them.
        "clear_untrusted_proxy_headers": True,
    }
    if settings.trusted_proxy:
        options.update(
            trusted_proxy=settings.trusted_proxy,
            trusted_proxy_count=settings.proxy_hops,
            trusted_proxy_headers={"x-forwarded-for"},
        )
    return options


def contract_channel(max_body_bytes: int) -> type[HTTPChannel]:
    """A waitress channel whose own refusals carry the contract's error body and the API's headers."""

    class ContractErrorTask(ErrorTask):
        def execute(self) -> None:
            # waitress hands an ErrorTask the parser that failed; types-waitress calls it an Error.
            error = cast(HTTPRequestParser, self.request).error
            if error is None:  # only a parser that failed starts an ErrorTask
                return super().execute()
            # waitress's own text for a body names its cap, one byte over MAX_BODY_BYTES: say what the API allows.
            too_large = f"The request body is larger than {max_body_bytes} bytes."
            message = too_large if error.code == 413 else error.body
            body = json.dumps({"error": errors.error_code(error.code, error.reason), "message": message}).encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers = [
                *self.response_headers,
                ("Content-Type", "application/json"),
                *security_headers.API_HEADERS.items(),
            ]
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class ContractChannel(HTTPChannel):
        error_task_class = ContractErrorTask

    return ContractChannel


def make_server(app, settings: Settings, options: dict | None = None, sockets: dict | None = None):
    """A waitress server of ``app`` (the public API's options unless given). Servers made with one
    ``sockets`` map are served by one loop: the first one's ``run`` serves them all."""
    sockets = sockets if sockets is not None else {}
    before = set(sockets)
    server = create_server(app, map=sockets, **(options or server_options(settings)))
    channel = contract_channel(settings.max_body_bytes)
    for descriptor, listener in sockets.items():
        if descriptor not in before and isinstance(listener, BaseWSGIServer):
            listener.channel_class = channel
    return server


def allow_descriptors(connection_limit: int) -> None:
    """Raise this process's open-file limit toward the hard limit, so that the connection limit can be reached."""
    wanted = connection_limit + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        if new_soft < wanted:
            log.warning(
                "open-file limit below what AUTH_CONNECTION_LIMIT needs",
                extra={"limit": new_soft, "needed": wanted},
            )


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
    allow_descriptors(settings.auth_connection_limit)
    # One loop, one map of sockets, two listeners: the admin API never answers on AUTH_PORT, nor the
    # public API on ADMIN_PORT. The connection limit counts both: it guards the process's descriptors.
    sockets: dict = {}
    server = make_server(system.app, settings, sockets=sockets)
    admin_server = make_server(system.admin_app, settings, admin_server_options(settings), sockets)
    log.info("auth service listening", extra={"urls": listening_urls(server)})
    log.info("admin API listening", extra={"urls": listening_urls(admin_server)})

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
        admin_server.close()
        system.stop_background(SHUTDOWN_GRACE_SECONDS)
        log.info("auth service stopped")
    return exit_code
