"""Tracing for a choreo process, configured the way OpenTelemetry documents it.

The standard variables apply as the SDK defines them: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the process, ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` choose the sampler (default ``parentbased_always_on``: a saga
sampled at the intake is sampled in every service, because the decision travels in the
``traceparent`` that crosses CDC), and ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``..._TRACES_ENDPOINT``) turns on the OTLP/HTTP exporter for a collector of your own.
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (comma-separated: ``requests``, ``psycopg``,
``aiohttp-server``) turns library instrumentation off, as it does for the agent.

Beside any of that, ``span_store_url`` (``CHOREO_TELEMETRY_URL``, which the embedded
stack sets) keeps every span in PostgreSQL for ``choreo trace``. Both exporters run in a
``BatchSpanProcessor``: spans are handed to a background thread, never written on the
event's own path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from outbox.span_store import PostgresSpanExporter

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
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    AioHttpServerInstrumentor().instrument()


INSTRUMENTATIONS: dict[str, Callable[[], None]] = {
    "requests": _instrument_requests,
    "psycopg": _instrument_psycopg,
    "aiohttp-server": _instrument_aiohttp_server,
}
"""The libraries choreo's processes use, by the name ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
takes. An aiohttp server must be instrumented before its ``web.Application`` is built."""


def configure_tracing(service_name: str, span_store_url: str = "",
                      env: Mapping[str, str] | None = None) -> TracerProvider:
    """Set the global tracer provider and instrument the libraries; call once, at start."""
    env = os.environ if env is None else env
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name}))
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if span_store_url:
        provider.add_span_processor(BatchSpanProcessor(
            PostgresSpanExporter(span_store_url), schedule_delay_millis=STORE_EXPORT_DELAY_MS))
    trace.set_tracer_provider(provider)
    disabled = {name.strip() for name in
                env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    for name, instrument in INSTRUMENTATIONS.items():
        if name not in disabled:
            instrument()
    return provider
