"""The sampler keeps sagas whole and drops the housekeeping statements no saga caused."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from choreo.outbox.telemetry import NoOrphanCalls


def recorded(build: Callable[[trace.Tracer], None]) -> list[str]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=NoOrphanCalls(ParentBased(ALWAYS_ON)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("test"))
    return [span.name for span in exporter.get_finished_spans()]


def test_a_call_outside_any_trace_is_dropped_and_one_inside_is_kept() -> None:
    def build(tracer: trace.Tracer) -> None:
        with tracer.start_as_current_span("save positions", kind=trace.SpanKind.CLIENT):
            pass
        with (tracer.start_as_current_span("handle StockReserved",
                                           kind=trace.SpanKind.CONSUMER),
              tracer.start_as_current_span("INSERT", kind=trace.SpanKind.CLIENT)):
            pass

    assert recorded(build) == ["INSERT", "handle StockReserved"]


def test_roots_of_other_kinds_follow_the_inner_sampler() -> None:
    def build(tracer: trace.Tracer) -> None:
        with tracer.start_as_current_span("POST /orders", kind=trace.SpanKind.SERVER):
            pass

    assert recorded(build) == ["POST /orders"]
