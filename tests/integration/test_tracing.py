"""One registration is one trace: HTTP request -> publish -> the worker's processing -> SMTP.

Both services are wired here in this process (their own bootstrap, the real
RabbitMQ and Redis, the mail sink) so that the SDK's in-memory exporter sees
every span of both: the trace context crosses the broker only in the AMQP
headers, as between two processes.
"""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from auth_service import bootstrap as auth_bootstrap
from auth_service.config import Settings as AuthSettings
from devtools.mailsink import MailSink
from devtools.stack import delete_run, unique_names
from email_service import bootstrap as worker_bootstrap
from email_service.config import Settings as WorkerSettings
from tests.integration.conftest import BASE_OVERRIDES, RABBITMQ_URL, REDIS_URL
from tests.tracing import exporter

PASSWORD = "correct horse battery staple"
CONNECT_TIMEOUT_SECONDS = 15


@dataclass
class System:
    auth: auth_bootstrap.AuthSystem
    sink: MailSink
    names: dict[str, str]

    def client(self):
        return self.auth.app.test_client()

    def queue(self, setting: str) -> str:
        return self.names[setting]


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    exporter()  # the tracer provider and the Redis instrumentation, before the services are built
    names = unique_names("trace")
    sink = MailSink().start()
    env = {
        **BASE_OVERRIDES,
        **names,
        "MONGO_URI": "mongomock://",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "WORKER_METRICS_PORT": "0",
        "WORKER_THREADS": "1",
    }
    auth = auth_bootstrap.build(AuthSettings.from_env(env))
    worker = worker_bootstrap.build_worker(WorkerSettings.from_env(env))
    threads = [*worker.consumers, *auth.background]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            if hasattr(thread, "ready"):
                assert thread.ready.wait(CONNECT_TIMEOUT_SECONDS), f"{thread.name} did not connect"
        yield System(auth, sink, names)
    finally:
        for thread in reversed(threads):
            thread.stop()
        for thread in reversed(threads):
            thread.join(10)
        sink.stop()
        delete_run(RABBITMQ_URL, names, redis_url=REDIS_URL)


def trace_of(recorded: InMemorySpanExporter, root: ReadableSpan, until, attempts: int = 100) -> list[ReadableSpan]:
    """The spans of ``root``'s trace, once ``until(spans)`` holds (spans end as their work does)."""
    for _ in range(attempts):
        found = [span for span in recorded.get_finished_spans() if span.context.trace_id == root.context.trace_id]
        if until(found):
            return found
        time.sleep(0.05)
    return found


def http_span(recorded: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [span for span in recorded.get_finished_spans() if span.name == name and span.kind is SpanKind.SERVER]
    return span


def named(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in found if span.name == name]


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


def describe(found: list[ReadableSpan], root: ReadableSpan) -> str:
    """The trace as an indented list of span names and durations, parents first."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(found, key=lambda span: span.start_time or 0):
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        lines.append(f"{'  ' * depth}{span.name} {duration_ms:.1f} ms")
        for child in children.get(span.context.span_id, []):
            walk(child, depth + 1)

    walk(root, 0)
    return "\n".join(lines)


def test_one_registration_is_one_trace_from_the_request_to_the_smtp_server(system, spans, unique_email, note):
    email = unique_email("traced")
    client = system.client()
    answer = client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 201
    [mail] = system.sink.wait_for(email)
    assert mail.code is not None

    register = http_span(spans, "POST /auth/register")
    requests_queue = system.queue("ACCOUNT_CREATION_QUEUE")
    found = trace_of(
        spans, register, lambda found: named(found, "smtp send") and named(found, f"process {requests_queue}")
    )

    [publish] = named(found, f"publish {requests_queue}")
    [process] = named(found, f"process {requests_queue}")
    [smtp] = named(found, "smtp send")
    assert publish.kind is SpanKind.PRODUCER and child_of(publish, register)
    assert process.kind is SpanKind.CONSUMER and child_of(process, publish)
    assert smtp.kind is SpanKind.CLIENT and child_of(smtp, process)
    redis_commands = [span for span in found if span.attributes and span.attributes.get("db.system") == "redis"]
    # The worker's commands (the pending code) hang under its processing; auth's own (the cooldown) under the request.
    worker_commands = [span for span in redis_commands if child_of(span, process)]
    assert worker_commands and all(child_of(span, process) or child_of(span, register) for span in redis_commands)
    note("one registration's trace:\n" + describe(found, register))

    # Nothing of what the user typed is on a span: no address, no password, no code.
    for span in found:
        shown = f"{span.name} {dict(span.attributes or {})}"
        assert email not in shown and PASSWORD not in shown and mail.code not in shown


def test_the_confirm_round_trip_stays_in_the_request_trace(system, spans, unique_email):
    email = unique_email("confirmed")
    client = system.client()
    assert client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    [mail] = system.sink.wait_for(email)
    spans.clear()
    answer = client.post("/auth/confirm", json={"email": email, "code": mail.code})
    assert answer.status_code == 200

    confirm = http_span(spans, "POST /auth/confirm")
    submissions, confirmed = system.queue("CONFIRM_EMAIL_CODE_QUEUE"), system.queue("ACCOUNT_CONFIRMED_QUEUE")
    found = trace_of(
        spans,
        confirm,
        lambda found: all(
            named(found, name)
            for name in ("process verification.replies", f"process {confirmed}", f"process {submissions}")
        ),
    )
    [request] = named(found, f"request {submissions}")
    [publish] = named(found, f"publish {submissions}")
    [judge] = named(found, f"process {submissions}")
    [reply] = named(found, "publish verification.replies")
    [replied] = named(found, "process verification.replies")
    assert child_of(request, confirm) and child_of(publish, request) and child_of(judge, publish)
    assert child_of(reply, judge) and child_of(replied, reply)
    # The durable code.verified message to auth, published before the reply, is in the trace too.
    [verified] = named(found, f"publish {confirmed}")
    [applied] = named(found, f"process {confirmed}")
    assert child_of(verified, judge) and child_of(applied, verified)


def test_probes_make_no_trace_and_the_query_string_never_reaches_a_span(system, spans):
    client = system.client()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code in (200, 503)
    assert client.get("/auth/verify?token=secret-looking-token").status_code == 400
    # Only the page's request has a span (a message of an earlier test may still end meanwhile).
    [page] = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert page.name == "GET /auth/verify"
    assert "secret-looking-token" not in str(dict(page.attributes or {}))


def test_a_request_refused_before_its_view_has_its_span_too(system, spans):
    answer = system.client().post("/auth/register", data="not json", content_type="text/plain")
    assert answer.status_code == 400
    [refused] = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert refused.name == "POST /auth/register" and refused.attributes["http.status_code"] == 400


class Collector:
    """An OTLP/HTTP receiver on loopback: keeps every span the services export to it."""

    def __init__(self):
        received: list = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"),
                        "",
                    )
                    for scope_spans in resource_spans.scope_spans:
                        received.extend((service, span) for span in scope_spans.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(ExportTraceServiceResponse().SerializeToString())

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def spans_until(self, found, attempts: int = 200) -> list:
        for _ in range(attempts):
            if found(list(self.received)):
                break
            time.sleep(0.05)
        return list(self.received)


def test_the_services_export_their_spans_by_otlp_and_the_trace_crosses_the_processes(start_stack, unique_email, note):
    with Collector() as collector:
        # A short batch delay, so the spans come within the test rather than after five seconds.
        stack = start_stack(OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
        email = unique_email("exported")
        status, _, _ = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
        assert status == 201
        stack.sink.wait_for(email)

        def registration(received):
            register = [span for service, span in received if span.name == "POST /auth/register"]
            return register and [span for _, span in received if span.trace_id == register[0].trace_id]

        def mailed(received):
            trace = registration(received)
            return trace and any(span.name == "smtp send" for span in trace)

        received = collector.spans_until(mailed)
    [register] = [span for service, span in received if span.name == "POST /auth/register"]
    services = {span.name: service for service, span in received if span.trace_id == register.trace_id}
    queue = stack.env["ACCOUNT_CREATION_QUEUE"]
    assert services["POST /auth/register"] == "auth_service"
    assert services[f"publish {queue}"] == "auth_service"
    assert services[f"process {queue}"] == "email_service"
    assert services["smtp send"] == "email_service"
    chain = ("POST /auth/register", f"publish {queue}", f"process {queue}", "smtp send")
    note("exported by OTLP, one trace across both processes: " + " -> ".join(f"{services[n]}:{n}" for n in chain))


def test_without_an_endpoint_nothing_is_exported_yet_both_services_log_the_same_trace_id(stack, unique_email):
    email = unique_email("logged")
    status, headers, _ = stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201
    request_id = headers["X-Request-Id"]
    stack.sink.wait_for(email)

    def lines(service) -> list[dict]:
        parsed = (json.loads(line) for line in service.log_text().splitlines() if line.startswith("{"))
        return [line for line in parsed if line.get("request_id") == request_id]

    for _ in range(100):  # the worker logs "message handled" just after the mail is accepted
        worker_lines = lines(stack.worker)
        if any(line["message"] == "message handled" for line in worker_lines):
            break
        time.sleep(0.05)
    auth_lines = lines(stack.auth)
    trace_ids = {line["trace_id"] for line in auth_lines + worker_lines}
    assert auth_lines and worker_lines and len(trace_ids) == 1
    [trace_id] = trace_ids
    assert trace_id is not None and len(trace_id) == 32 and int(trace_id, 16)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in stack.env
