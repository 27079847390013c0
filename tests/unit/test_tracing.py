"""The trace context on the queues, in the log lines, and where spans are exported."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from common import tracing
from common.messaging import topology
from common.messaging.consumer import Result
from common.messaging.envelope import Outgoing
from tests.observability import json_log_lines
from tests.tracing import exporter as recording_exporter
from tests.unit.test_consumer import QUEUE, deliver

TRACEPARENT = "traceparent"


def test_a_published_message_carries_the_publish_span_in_its_headers(spans):
    with tracing.publishing("q.out", Outgoing(type="t", body={}, request_id="req-12345678")) as message:
        headers = message.properties().headers
    [publish] = spans.get_finished_spans()
    assert publish.name == "publish q.out" and publish.kind is trace.SpanKind.PRODUCER
    version, trace_id, span_id, _ = headers[TRACEPARENT].split("-")
    assert (version, int(trace_id, 16), int(span_id, 16)) == ("00", publish.context.trace_id, publish.context.span_id)
    assert headers["x-request-id"] == "req-12345678"


def test_the_consumer_processes_under_the_publisher_and_a_retry_carries_the_attempt_on(spans):
    with tracing.publishing(QUEUE, Outgoing(type="t", body={"x": 1})) as message:
        pass
    [publish] = spans.get_finished_spans()
    [(_, retry_queue, _, properties), _] = deliver(lambda m, p: Result.retry("smtp timeout"), message)
    assert retry_queue == topology.WorkQueue(QUEUE).retry_queue(0)

    parked, process = (span for span in spans.get_finished_spans() if span is not publish)  # in the order they end
    assert process.name == f"process {QUEUE}" and process.kind is trace.SpanKind.CONSUMER
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == publish.context.trace_id
    # The parked copy hangs under this attempt, so the next one lands in the same trace.
    assert parked.name == f"publish {retry_queue}" and parked.parent.span_id == process.context.span_id
    assert f"{parked.context.span_id:016x}" in properties.headers[TRACEPARENT]


def test_a_message_without_trace_context_starts_a_trace_of_its_own(spans):
    deliver(lambda m, p: Result.ack(), Outgoing(type="t", body={}), headers={TRACEPARENT: "not a traceparent"})
    [process] = spans.get_finished_spans()
    assert process.parent is None


def test_every_log_line_inside_a_span_carries_its_trace_id_and_none_outside(spans):
    with json_log_lines() as lines:
        logger = logging.getLogger("test.tracing")
        with tracing.client_span("work") as span:
            logger.info("inside")
        logger.info("outside")
    inside, outside = lines
    assert inside["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert outside["trace_id"] is None


def test_spans_are_exported_by_otlp_only_when_an_endpoint_is_set():
    assert tracing.otlp_exporter(None) is None
    assert tracing.otlp_exporter("") is None
    exporter = tracing.otlp_exporter("http://collector:4318/")
    assert type(exporter).__name__ == "OTLPSpanExporter"
    assert exporter._endpoint == "http://collector:4318/v1/traces"
    exporter.shutdown()


@pytest.mark.parametrize("opt_in", ["http", "http/dup"])
def test_the_query_string_never_reaches_a_span_under_the_stable_http_conventions(spans, monkeypatch, opt_in):
    from flask import Flask
    from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability as stability

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    # The instrumentation reads the variable once per process: read it again for this test.
    monkeypatch.setattr(stability, "_initialized", False)
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
    app = Flask(__name__)
    app.add_url_rule("/auth/verify", "verify", lambda: "page")
    tracing.instrument_flask(app)
    # As gunicorn passes it: the raw request line's target, query included.
    uri = {"RAW_URI": "/auth/verify?token=secret-looking-token"}
    assert app.test_client().get("/auth/verify?token=secret-looking-token", environ_base=uri).status_code == 200
    [page] = spans.get_finished_spans()
    attributes = dict(page.attributes or {})
    assert attributes.get("url.path") == "/auth/verify"
    assert "secret-looking-token" not in str(attributes)


INCOMING_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
INCOMING_TRACEPARENT = f"00-{INCOMING_TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture(params=["unconfigured", "configured without an exporter"])
def unrecorded(request, monkeypatch) -> trace.TracerProvider:
    """A provider that records nothing: OpenTelemetry's default one, or what ``configure`` makes without an exporter."""
    if request.param == "unconfigured":
        return trace.ProxyTracerProvider()
    # A process sets its provider once, and it must be the run's recording one (tests/tracing.py): set it now,
    # before configure's call is stubbed out, or a later test's spans would find no provider that records.
    recording_exporter()
    monkeypatch.setattr(trace, "set_tracer_provider", lambda provider: None)
    return tracing.configure("auth_service", None)


def numbered_app(provider: trace.TracerProvider) -> tuple[Flask, list[dict]]:
    """A confirm that logs a line and publishes a message, and a probe; with the headers of what is published."""
    app = Flask(__name__)
    published: list[dict] = []

    def confirm():
        logging.getLogger("test.tracing").info("confirming")
        with tracing.publishing("q.out", Outgoing(type="t", body={})) as message:
            published.append(message.properties().headers)
        return "confirmed"

    def healthz():
        logging.getLogger("test.tracing").info("probed")
        return "ok"

    app.add_url_rule("/auth/confirm", "confirm", confirm, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", healthz)
    tracing.instrument_flask(app, provider)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False), "FlaskInstrumentor where nothing records"
    return app, published


def published_trace_id(headers: dict) -> str:
    _, trace_id, _, _ = headers[TRACEPARENT].split("-")
    return trace_id


def test_an_unrecorded_request_logs_a_trace_id_of_its_own_and_its_message_carries_it(unrecorded):
    app, published = numbered_app(unrecorded)
    with json_log_lines() as lines:
        for _ in range(2):
            assert app.test_client().post("/auth/confirm").status_code == 200
    first, second = (line["trace_id"] for line in lines if line["message"] == "confirming")
    assert first is not None and int(first, 16) != 0 and len(first) == 32
    assert first != second
    assert [published_trace_id(headers) for headers in published] == [first, second]
    # The request's span left with the request.
    assert not trace.get_current_span().get_span_context().is_valid


def test_an_unrecorded_request_continues_the_trace_of_an_incoming_traceparent(unrecorded):
    app, published = numbered_app(unrecorded)
    with json_log_lines() as lines:
        app.test_client().post("/auth/confirm", headers={TRACEPARENT: INCOMING_TRACEPARENT})
    [line] = [line for line in lines if line["message"] == "confirming"]
    assert line["trace_id"] == INCOMING_TRACE_ID
    [headers] = published
    assert published_trace_id(headers) == INCOMING_TRACE_ID


def test_probes_get_no_span_when_nothing_is_recorded(unrecorded):
    app, _ = numbered_app(unrecorded)
    with json_log_lines() as lines:
        assert app.test_client().get("/healthz", headers={TRACEPARENT: INCOMING_TRACEPARENT}).status_code == 200
    [line] = [line for line in lines if line["message"] == "probed"]
    assert line["trace_id"] is None


@pytest.mark.parametrize(
    ("provider", "recording"),
    [
        (trace.ProxyTracerProvider(), False),
        (trace.NoOpTracerProvider(), False),
        (TracerProvider(sampler=ALWAYS_OFF), False),
        (TracerProvider(), True),
    ],
)
def test_only_an_sdk_provider_that_samples_records(provider, recording):
    assert tracing.records(provider) is recording


def test_the_auth_services_access_lines_carry_the_request_trace_even_for_a_refused_request(system, unique_email):
    # Whichever provider this run has by now (none, or tests/tracing.py's recording one): both number requests.
    body = {"email": unique_email(), "password": "correct horse battery"}
    with json_log_lines("auth_service") as lines:
        system.client.post("/auth/register", json=body, headers={TRACEPARENT: INCOMING_TRACEPARENT})
        system.client.post("/auth/register", data="not json", content_type="text/plain")
    continued, refused = (line["trace_id"] for line in lines if line["logger"] == "auth_service.access")
    assert continued == INCOMING_TRACE_ID
    assert refused is not None and refused != INCOMING_TRACE_ID


def test_where_nothing_is_recorded_the_worker_starts_no_span_and_carries_the_publishers_trace_on(
    unrecorded, spans, monkeypatch
):
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: unrecorded)
    inside: list[trace.Span] = []

    def handler(message, publisher):
        logging.getLogger("test.tracing").info("handling")
        with tracing.client_span("smtp send") as span:
            inside.append(span)
        return Result.retry("smtp timeout")

    with json_log_lines() as lines:
        [(_, _, _, properties), _] = deliver(
            handler, Outgoing(type="t", body={"x": 1}), headers={TRACEPARENT: INCOMING_TRACEPARENT}
        )
    [line] = [line for line in lines if line["message"] == "handling"]
    assert line["trace_id"] == INCOMING_TRACE_ID
    assert f"{inside[0].get_span_context().trace_id:032x}" == INCOMING_TRACE_ID
    # The parked copy continues the same trace, so its next attempt's lines carry the same id.
    assert published_trace_id(properties.headers) == INCOMING_TRACE_ID
    assert spans.get_finished_spans() == ()
    assert not trace.get_current_span().get_span_context().is_valid
