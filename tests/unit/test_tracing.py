"""The trace context on the queues, in the log lines, and where spans are exported."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace

from common import tracing
from common.messaging import topology
from common.messaging.consumer import Result
from common.messaging.envelope import Outgoing
from tests.observability import json_log_lines
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
