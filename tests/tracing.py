"""The SDK's in-memory exporter for the tests: the spans this test process records while a test asks."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import tracing


class SwitchedExporter(InMemorySpanExporter):
    """Keeps spans only while ``recording``: the rest of the run makes spans nobody reads."""

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.recording:
            return SpanExportResult.SUCCESS
        return super().export(spans)


@functools.cache
def exporter() -> SwitchedExporter:
    """One for the whole run: a process has one tracer provider, set once."""
    switched = SwitchedExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(switched))
    tracing.instrument_redis()
    return switched
