"""W3C trace context across the outbox: written into each row, read from each event.

The ``traceparent`` column is placed as a Kafka header by Debezium's EventRouter, so a
saga's spans join into one trace without any agent in Kafka Connect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from opentelemetry import context, propagate, trace

from outbox.delivery import ReceivedEvent

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


def epoch_ns(iso_time: str) -> int | None:
    """``ce_time`` (ISO 8601, as the writer stamps it) in nanoseconds; None if unreadable."""
    try:
        return int(datetime.fromisoformat(iso_time).timestamp() * 1e9)
    except ValueError:
        return None


def hop_seconds(occurred_at: str, received_ns: int | None) -> float | None:
    """From the event's ``ce_time`` (stamped in the committing transaction) to its receipt:
    what CDC and the broker together cost one event."""
    started = epoch_ns(occurred_at)
    if started is None or received_ns is None or received_ns < started:
        return None
    return (received_ns - started) / 1e9


@contextmanager
def consumed_span(event: ReceivedEvent, consumer: str) -> Iterator[None]:
    """The event's way here and its handling, as two spans of the saga's trace.

    ``relay <topic> -> <consumer>`` runs from the event's ``ce_time`` to its receipt, so
    the time spent in Debezium and the broker shows as a span of its own (its attributes
    split it at the broker's timestamp); ``handle <type>`` nests under it and is current
    while the handler runs, so what the handler emits continues the trace.
    """
    topic = event.origin.split("/", 1)[0]
    parent = propagate.extract({"traceparent": event.traceparent}) if event.traceparent \
        else context.get_current()
    started = epoch_ns(event.occurred_at)
    if started is not None and event.received_ns is not None and event.received_ns >= started:
        attributes: dict[str, str | int] = {"messaging.destination.name": topic,
                                            "messaging.consumer.group.name": consumer}
        if event.broker_ms is not None:
            attributes["choreo.cdc_ms"] = event.broker_ms - started // 1_000_000
            attributes["choreo.delivery_ms"] = event.received_ns // 1_000_000 - event.broker_ms
        relay = TRACER.start_span(f"relay {topic} -> {consumer}", context=parent,
                                  kind=trace.SpanKind.CONSUMER, start_time=started,
                                  attributes=attributes)
        relay.end(end_time=event.received_ns)
        parent = trace.set_span_in_context(relay, parent)
    token = context.attach(parent)
    try:
        with TRACER.start_as_current_span(
                f"handle {event.event_type}", kind=trace.SpanKind.CONSUMER,
                attributes={"choreo.consumer": consumer, "choreo.event_id": str(event.event_id),
                            "choreo.order_id": event.aggregate_id}):
            yield
    finally:
        context.detach(token)
