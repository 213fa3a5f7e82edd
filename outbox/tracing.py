"""W3C trace context across the outbox: written into each row, read from each event.

The ``traceparent`` column is placed as a Kafka header by Debezium's EventRouter, so a
saga's spans join into one trace without any agent in Kafka Connect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context

from choreo.outbox.delivery import Delivery, ReceivedEvent
from choreo.outbox.wire import HEADER_TIME, HEADER_TRACEPARENT

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


@dataclass(frozen=True)
class Hop:
    """One delivery's way here: how long it took, and the span that shows it."""

    seconds: float | None
    """From the event's ``ce_time`` (stamped in the committing transaction) to its receipt:
    what CDC and the broker together cost it; None when either time is unknown."""
    context: Context | None
    """The saga's trace with the relay span in it, for the handling to continue."""


def received(delivery: Delivery, consumer: str) -> Hop:
    """The hop of a delivery just polled, measured once, and its ``relay <topic> ->
    <consumer>`` span: from ``ce_time`` to receipt, so the time spent in Debezium and the
    broker shows as a span of its own (its attributes split it at the broker's timestamp).

    Once per receipt, not per handling attempt: a retry or a batch handled again one by
    one is the same hop.
    """
    started = epoch_ns(delivery.headers.get(HEADER_TIME, ""))
    arrived = delivery.received_ns
    if started is None or arrived is None or arrived < started:
        return Hop(None, None)
    traceparent = delivery.headers.get(HEADER_TRACEPARENT, "")
    if not traceparent:
        return Hop((arrived - started) / 1e9, None)
    parent = propagate.extract({"traceparent": traceparent})
    attributes: dict[str, str | int] = {"messaging.destination.name": delivery.topic,
                                        "messaging.consumer.group.name": consumer}
    if delivery.broker_ms is not None:
        attributes["choreo.cdc_ms"] = delivery.broker_ms - started // 1_000_000
        attributes["choreo.delivery_ms"] = arrived // 1_000_000 - delivery.broker_ms
    relay = TRACER.start_span(f"relay {delivery.topic} -> {consumer}", context=parent,
                              kind=trace.SpanKind.CONSUMER, start_time=started,
                              attributes=attributes)
    relay.end(end_time=arrived)
    return Hop((arrived - started) / 1e9, trace.set_span_in_context(relay, parent))


@contextmanager
def consumed_span(event: ReceivedEvent, consumer: str,
                  hop: Context | None = None) -> Iterator[None]:
    """``handle <type>`` as the current span while the handler runs, so that what it emits
    continues the trace: under the delivery's relay span (``hop``) when there is one, else
    (a replayed dead letter) under the event's ``traceparent``."""
    parent = hop or (propagate.extract({"traceparent": event.traceparent})
                     if event.traceparent else context.get_current())
    token = context.attach(parent)
    try:
        with TRACER.start_as_current_span(
                f"handle {event.event_type}", kind=trace.SpanKind.CONSUMER,
                attributes={"choreo.consumer": consumer, "choreo.event_id": str(event.event_id),
                            "choreo.aggregate_id": event.aggregate_id}):
            yield
    finally:
        context.detach(token)
