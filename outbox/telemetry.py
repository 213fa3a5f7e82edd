"""Tracing for a choreo process, configured the way OpenTelemetry documents it.

The standard variables apply as the SDK defines them: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the process, ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` choose the sampler (default ``parentbased_always_on``: a saga
sampled at the intake is sampled in every service, because the decision travels in the
``traceparent`` that crosses CDC), and ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``..._TRACES_ENDPOINT``) turns on the OTLP/HTTP exporter for a collector of your own.
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (comma-separated: ``requests``, ``psycopg``,
``aiohttp-server``) turns library instrumentation off, as it does for the agent; unset,
it means ``psycopg`` (``DISABLED_BY_DEFAULT``).

Beside any of that, ``span_store_url`` (``CHOREO_TELEMETRY_URL``, which the embedded
stack sets) keeps spans in PostgreSQL for ``choreo trace``: every trace with a problem
and a share of the rest (``outbox.tail_sampling``, ``CHOREO_TRACE_*``). Both exporters run in a
``BatchSpanProcessor``: spans are handed to a background thread, never written on the
event's own path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from choreo.outbox.span_store import PostgresSpanExporter
from choreo.outbox.tail_sampling import TailSampling

STORE_EXPORT_DELAY_MS = 500
"""How often the span store is written: soon enough that ``choreo trace`` right after a
saga shows it whole, seldom enough to batch the spans of many sagas per insert."""


def _instrument_requests() -> None:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument()


def _instrument_psycopg() -> None:
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    PsycopgInstrumentor().instrument(skip_dep_check=True)


def _instrument_aiohttp_server() -> None:
    os.environ.setdefault("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", QUIET_PATHS)
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    AioHttpServerInstrumentor().instrument()


DISABLED_BY_DEFAULT = "psycopg"
"""Used while ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` is unset. A span per SQL statement
cost 9.3 CPU-ms per saga on the 2-core machine (53.9 against 44.6 with it off, steady
50/s, docs/observability.md), a fifth of the saga's whole cost; set the variable to ``""``
to trace every statement."""

INSTRUMENTATIONS: dict[str, Callable[[], None]] = {
    "requests": _instrument_requests,
    "psycopg": _instrument_psycopg,
    "aiohttp-server": _instrument_aiohttp_server,
}
"""The libraries choreo's processes use, by the name ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
takes. An aiohttp server must be instrumented before its ``web.Application`` is built."""


QUIET_PATHS = "/health,/metrics"
"""Probed every second by the supervisor and Prometheus: no span (unless the variable
``OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS`` says otherwise)."""


class NoOrphanCalls(Sampler):
    """The configured sampler, except that a client span with no parent is dropped.

    A consumer saves positions, renews leases and reads its gauges several times a
    second outside any saga; traced, each statement would be a trace of its own and bury
    the sagas' traces in the store. Every call worth seeing happens inside a request,
    a handler or a job, which gives it a parent.
    """

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: trace.TraceState | None = None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes,
                                        links, trace_state)

    def get_description(self) -> str:
        return f"NoOrphanCalls{{{self.inner.get_description()}}}"


def configure_tracing(service_name: str, span_store_url: str = "",
                      sampling: TailSampling | None = None) -> TracerProvider:
    """Set the global tracer provider and instrument the libraries; call once, at start.

    The ``OTEL_*`` variables are read from the process environment, as the SDK itself
    (sampler, exporter, resource) reads them: one source for all of them."""
    env = os.environ
    provider = TracerProvider(
        sampler=NoOrphanCalls(_get_from_env_or_default()),
        resource=Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name}))
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if span_store_url:
        exporter = PostgresSpanExporter(span_store_url, sampling=sampling)
        provider.add_span_processor(BatchSpanProcessor(
            exporter, schedule_delay_millis=STORE_EXPORT_DELAY_MS))
    trace.set_tracer_provider(provider)
    disabled = {name.strip() for name in
                env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", DISABLED_BY_DEFAULT).split(",")}
    for name, instrument in INSTRUMENTATIONS.items():
        if name not in disabled:
            instrument()
    return provider
