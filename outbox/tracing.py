"""W3C trace context across the outbox: written into each row, read from each event.

The ``traceparent`` column is placed as a Kafka header by Debezium's EventRouter, so a
saga's spans join into one trace without any agent in Kafka Connect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context, propagate, trace

TRACER = trace.get_tracer("choreo.outbox")


def current_traceparent() -> str:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def trace_id_of(traceparent: str | None) -> str:
    """The 32-hex trace id of a W3C ``traceparent`` (``00-<trace>-<span>-<flags>``), for
    log lines; empty if absent or malformed."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


@contextmanager
def continued_span(name: str, traceparent: str,
                   kind: trace.SpanKind = trace.SpanKind.CONSUMER,
                   **attributes: str) -> Iterator[None]:
    """A span that continues a stored or received trace, so emits inside it carry it on.

    Consumers continue the producer's trace; deadline jobs and customer cancels continue
    the trace saved with the saga, so one saga stays one trace whatever ends it.
    """
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    token = context.attach(parent) if parent is not None else None
    try:
        with TRACER.start_as_current_span(name, kind=kind, attributes=attributes):
            yield
    finally:
        if token is not None:
            context.detach(token)
