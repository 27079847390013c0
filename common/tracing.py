"""Traces across HTTP and the queues (OpenTelemetry), exported by OTLP only where configured.

One registration is one trace: auth's span for the HTTP request, a ``publish``
span per message it sends, the worker's ``process`` span for that message
(its parent travels in the message's W3C ``traceparent`` header), and under
it the worker's Redis commands and its ``smtp send``. Retries, dead letters,
the code submission's reply and the ``code.verified`` message carry the
context on, so the retry ladder and the confirm round trip stay in the trace.

A process that never calls ``configure`` (unit tests, tools) gets
OpenTelemetry's no-op tracer: the helpers below then cost next to nothing
(its HTTP requests still get a trace id each, for their log lines).
Where nothing is recorded, the helpers below start no span inside a trace
already in hand: the message's or the request's context is what the log lines
and the next message need, and a span that is never kept would cost a few
tens of microseconds per message for ids no one reads.
Spans hold no address, code, token or query string: only routes, queue names,
message ids and template names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import replace
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON
from opentelemetry.trace import Span, SpanKind

from common.messaging.envelope import Outgoing

TRACER_NAME = "email_verification"
MESSAGING_SYSTEM = "rabbitmq"
# Probed every few seconds by orchestrators and scrapers: a trace each would bury the requests.
UNTRACED_ROUTES = "healthz,readyz,metrics"
# Never recorded, so never shown: the name only has to be a name.
REQUEST_SPAN = "HTTP request"
_REQUEST_SPAN_KEY = "email_verification.request_span"
OTLP_TRACES_PATH = "/v1/traces"

_tracer = trace.get_tracer(TRACER_NAME)


def configure(service: str, otlp_endpoint: str | None, exporter: SpanExporter | None = None) -> TracerProvider:
    """Record this process's spans; export them by OTLP/HTTP to ``otlp_endpoint`` if set, else nowhere.

    Without an exporter the spans are not recorded, only numbered: their trace ids still tag the
    log lines and travel on the messages, at the least cost.
    """
    exporter = exporter or otlp_exporter(otlp_endpoint)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=DEFAULT_ON if exporter is not None else ALWAYS_OFF,
    )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        # A span per Redis command costs tens of microseconds even unrecorded: only where it is exported.
        instrument_redis()
    trace.set_tracer_provider(provider)
    return provider


def otlp_exporter(endpoint: str | None) -> SpanExporter | None:
    """The OTLP/HTTP exporter to ``endpoint``, or None: without an endpoint no span leaves the process."""
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=otlp_traces_url(endpoint))


def otlp_traces_url(endpoint: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT names the collector; traces go to its ``/v1/traces``, as the SDK does."""
    return endpoint.rstrip("/") + OTLP_TRACES_PATH


def instrument_redis() -> None:
    """A span per Redis command (the command's name only: arguments are masked)."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def instrument_flask(app: Any, provider: trace.TracerProvider | None = None) -> None:
    """A server span per HTTP request, current while it is handled; the query string never reaches the span.

    Whether the span is recorded or only numbered is settled here, from ``provider`` (the process's by
    default), so ``configure`` must come first, as in auth_service/__main__.py: asking on every request
    would cost part of what the numbered span saves, for a provider that never changes once set.
    """
    provider = provider or trace.get_tracer_provider()
    if not records(provider):
        _number_requests(app, provider)
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app, tracer_provider=provider, excluded_urls=UNTRACED_ROUTES)
    # Registered after the instrumentation's own hook, so it runs once the request's span is current.
    app.before_request(_without_query)


def records(provider: trace.TracerProvider) -> bool:
    """Whether ``provider`` keeps any span: not OpenTelemetry's default (no-op) one, nor one sampling none."""
    return isinstance(provider, TracerProvider) and provider.sampler is not ALWAYS_OFF


def _number_requests(app: Any, provider: trace.TracerProvider) -> None:
    # FlaskInstrumentor gathers a dozen WSGI attributes per request only to drop them with the span:
    # where nothing is recorded, the span's ids (for the log lines and the messages) are all it gives.
    from flask import request
    from opentelemetry.util.http import parse_excluded_urls

    # The same list FlaskInstrumentor is given, matched on the path alone: a query string cannot untrace a request.
    untraced = parse_excluded_urls(UNTRACED_ROUTES)
    # The default provider numbers nothing: a request without a traceparent would log no trace id.
    numbering = provider if isinstance(provider, TracerProvider) else TracerProvider(sampler=ALWAYS_OFF)
    tracer = numbering.get_tracer(TRACER_NAME)

    def start_request_span() -> None:
        if untraced.url_disabled(request.path):
            return
        incoming = propagate.extract(request.headers)
        span = tracer.start_span(REQUEST_SPAN, context=incoming, kind=SpanKind.SERVER)
        # On the incoming context, so its baggage travels on too, as under FlaskInstrumentor.
        token = context.attach(trace.set_span_in_context(span, incoming))
        request.environ[_REQUEST_SPAN_KEY] = (span, token)

    def end_request_span(error: BaseException | None) -> None:
        started = request.environ.pop(_REQUEST_SPAN_KEY, None)
        if started is not None:
            span, token = started
            span.end()
            context.detach(token)

    app.before_request(start_request_span)
    app.teardown_request(end_request_span)


def _without_query() -> None:
    # GET /auth/verify?token=... carries a link token in its query: the span keeps only the path.
    from flask import request

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("http.target", request.path)
        span.set_attribute("http.url", request.base_url)
        # Under OTEL_SEMCONV_STABILITY_OPT_IN=http or http/dup the query is recorded by its stable names too.
        recorded = getattr(span, "attributes", None) or {}
        if "url.query" in recorded:
            span.set_attribute("url.query", "")
        if "url.full" in recorded:
            span.set_attribute("url.full", request.base_url)


def _in_unrecorded_trace() -> bool:
    """Whether a span started now would be neither kept nor needed: nothing is recorded, and a trace is in hand."""
    return not records(trace.get_tracer_provider()) and trace.get_current_span().get_span_context().is_valid


def current_trace_id() -> str | None:
    """The trace id of the span in hand (32 hex digits), for the log lines; None outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def _messaging(operation: str, destination: str, message_id: str | None) -> dict[str, str]:
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation": operation,
        "messaging.destination.name": destination,
    }
    if message_id:
        attributes["messaging.message.id"] = message_id
    return attributes


@contextlib.contextmanager
def publishing(destination: str, message: Outgoing) -> Iterator[Outgoing]:
    """A ``publish`` span for ``message``; yields the message carrying that span's context in its headers."""
    if _in_unrecorded_trace():
        carried: dict[str, str] = {}
        propagate.inject(carried)
        yield replace(message, trace_headers=carried)
        return
    with _tracer.start_as_current_span(
        f"publish {destination}",
        kind=SpanKind.PRODUCER,
        attributes=_messaging("publish", destination, message.message_id),
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield replace(message, trace_headers=carrier)


@contextlib.contextmanager
def republishing(destination: str, headers: MutableMapping[str, Any], message_id: str | None) -> Iterator[None]:
    """A ``publish`` span for a copy of a delivered message (retry, dead letter): its headers get the span's
    context in place of the one it came with, so the next attempt hangs under this one."""
    if _in_unrecorded_trace():
        propagate.inject(headers)
        yield
        return
    with _tracer.start_as_current_span(
        f"publish {destination}", kind=SpanKind.PRODUCER, attributes=_messaging("publish", destination, message_id)
    ):
        propagate.inject(headers)
        yield


@contextlib.contextmanager
def requesting(destination: str) -> Iterator[None]:
    """A ``request`` span around a publish and the wait for its reply (the confirm round trip)."""
    if _in_unrecorded_trace():
        yield
        return
    with _tracer.start_as_current_span(
        f"request {destination}", kind=SpanKind.CLIENT, attributes=_messaging("request", destination, None)
    ):
        yield


@contextlib.contextmanager
def processing(source: str, headers: Mapping[str, Any] | None, message_id: str | None) -> Iterator[Span]:
    """A ``process`` span for a delivered message, under the span that published it, current while it is handled."""
    parent = propagate.extract({key: value for key, value in (headers or {}).items() if isinstance(value, str)})
    if not records(trace.get_tracer_provider()):
        carried = trace.get_current_span(parent)
        if carried.get_span_context().is_valid:
            # The publisher's span, as it came: its trace id tags the log lines, its context the replies.
            token = context.attach(parent)
            try:
                yield carried
            finally:
                context.detach(token)
            return
    with _tracer.start_as_current_span(
        f"process {source}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=_messaging("process", source, message_id),
    ) as span:
        yield span


def client_span(name: str, **attributes: str) -> contextlib.AbstractContextManager[Span]:
    """A span for a call to another server (the SMTP server, say), current while the call runs."""
    if _in_unrecorded_trace():
        return contextlib.nullcontext(trace.get_current_span())
    return _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def inject_current(carrier: MutableMapping[str, str]) -> None:
    """The current span's context into ``carrier``, to continue the trace later, elsewhere (a webhook's
    attempts, made after the event's processing span has ended)."""
    propagate.inject(carrier)


def continuing(name: str, carrier: Mapping[str, str], **attributes: str) -> contextlib.AbstractContextManager[Span]:
    """A client span under the context kept in ``carrier`` (by ``inject_current``), current while it runs."""
    return _tracer.start_as_current_span(
        name, context=propagate.extract(dict(carrier)), kind=SpanKind.CLIENT, attributes=attributes
    )
