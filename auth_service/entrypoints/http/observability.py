"""What an operator sees of the HTTP API: one access-log line and metrics per request, and ``/metrics``.

The access log names the route, never the body or the query string, so what
a client sent (a password, a code) cannot reach the logs this way.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

from common.logs import bind_request_id
from common.metrics import CONTENT_TYPE_LATEST, CollectorRegistry, exposition

access_log = logging.getLogger("auth_service.access")

UNMATCHED_ROUTE = "<unmatched>"
# A label value is a time series kept for the life of the process: only these methods get one of their own,
# so that a client sending made-up methods cannot grow the registry (and /metrics) without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "other"
# Probed every few seconds by orchestrators and scrapers: logged at DEBUG so they do not drown the requests.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, prefix: str = ""):
        # ``prefix``: a second app of the process (the admin API) counts in series of its own.
        self.requests = Counter(
            f"{prefix}http_requests",
            "HTTP requests answered, by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )


def start_request(request_id: str) -> None:
    """Called as the request begins: its clock starts and every log line of it carries its id."""
    g.request_started = time.perf_counter()
    bind_request_id(request_id)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


def route_label() -> str:
    """The rule the request matched (``/auth/login``), never the path a client typed."""
    return request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE


def install(app: Flask, registry: CollectorRegistry, prefix: str = "", serve_metrics: bool = True) -> HttpMetrics:
    metrics = HttpMetrics(registry, prefix)

    @app.after_request
    def record_request(response):
        started = g.get("request_started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        route = route_label()
        method = method_label(request.method)
        metrics.requests.labels(method, route, str(response.status_code)).inc()
        metrics.latency.labels(method, route).observe(elapsed)
        access_log.log(
            logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
            "%s %s %s",
            method,
            route,
            response.status_code,
            extra={
                "method": method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                "remote_addr": request.remote_addr,
            },
        )
        return response

    @app.teardown_request
    def forget_request_id(error=None):
        bind_request_id(None)

    def metrics_view():
        return Response(exposition(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)

    if serve_metrics:
        app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    return metrics
