"""A saga's trace: its spans found through the order, and how to read them.

The spans come from the span store every process of the embedded stack exports to
(``outbox.span_store``), found through the trace the order was placed under. The
slowest span is the one with the most time *of its own*: its duration less what its
children in the same service cover. A call's wait on another service stays the caller's,
so a slow psp shows as payments' call to it, not as the handler around that call.

``choreo trace`` draws this in the terminal, the console's saga page in HTML.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg

from choreo.outbox import span_store
from choreo.outbox.span_store import StoredSpan
from choreo.outbox.tracing import trace_id_of
from choreo.services.orders import store as orders_store
from choreo.stack.errors import StackError
from choreo.stack.settings import TELEMETRY_DATABASE, StackSettings

RELAY_PREFIX = "relay "


@dataclass(frozen=True)
class Line:
    """One span as a waterfall row: when it started after the trace did, its own time."""

    span: StoredSpan
    offset_ms: float
    own_ms: float


@dataclass(frozen=True)
class Hop:
    """A ``relay <topic> -> <consumer>`` span: event committed to event received."""

    route: str
    took_ms: float
    cdc_ms: object | None
    """Commit to the record's timestamp in the log (Debezium's share), when known."""
    delivery_ms: object | None
    """The record's timestamp to the consumer's poll (the broker's and the fetch's)."""


def own_time_ms(span: StoredSpan, spans: Iterable[StoredSpan]) -> float:
    """The span's duration less the union of its same-service children's intervals."""
    children = sorted((max(child.started_at, span.started_at), min(child.ended_at, span.ended_at))
                      for child in spans
                      if child.parent_id == span.span_id and child.service == span.service)
    covered_s, cursor = 0.0, span.started_at
    for start, end in children:
        start = max(start, cursor)
        if end > start:
            covered_s += (end - start).total_seconds()
            cursor = end
    return max(span.duration_ms - covered_s * 1000, 0.0)


def label(span: StoredSpan) -> str:
    """The span's name, with the URL path of an HTTP call (clients name spans ``POST``)."""
    url = span.attributes.get("url.full") or span.attributes.get("http.url")
    if span.kind == "client" and isinstance(url, str):
        return f"{span.name} {urlsplit(url).path}"
    return span.name


def is_sql(span: StoredSpan) -> bool:
    return "db.system" in span.attributes or "db.system.name" in span.attributes


def lines(spans: list[StoredSpan]) -> list[Line]:
    """Every span as a row, earliest first (the longer first of two that start together)."""
    start = min(span.started_at for span in spans)
    return [Line(span, (span.started_at - start).total_seconds() * 1000, own_time_ms(span, spans))
            for span in sorted(spans, key=lambda s: (s.started_at, -s.duration_ms))]


def total_ms(spans: list[StoredSpan]) -> float:
    """From the first span's start to the last one's end."""
    started = min(span.started_at for span in spans)
    return (max(span.ended_at for span in spans) - started).total_seconds() * 1000


def slowest(rows: list[Line]) -> Line:
    """The row with the most time of its own."""
    return max(rows, key=lambda line: line.own_ms)


def hops(rows: list[Line]) -> list[Hop]:
    """Each CDC hop of the trace, in the order the rows are."""
    return [Hop(line.span.name.removeprefix(RELAY_PREFIX), line.span.duration_ms,
                line.span.attributes.get("choreo.cdc_ms"),
                line.span.attributes.get("choreo.delivery_ms"))
            for line in rows if line.span.name.startswith(RELAY_PREFIX)]


SETTLED_AFTER_S = 1.5
"""Three export rounds without a new span: the trace is taken as complete."""


def saga_spans(settings: StackSettings, order_id: str, wait_s: float) -> list[StoredSpan]:
    """The spans of the order's trace; waits up to ``wait_s`` for them to settle.

    Every process exports its spans in batches about twice a second, so the trace of a
    saga that just ended may still be arriving: it is read until no new span came for
    ``SETTLED_AFTER_S`` (or ``wait_s`` is up).

    Raises StackError when the id is no order id, no order has it, or it has no trace.
    """
    parsed = orders_store.parse_order_id(order_id)
    if parsed is None:
        raise StackError(f"{order_id!r} is not an order id (a UUID)")
    with psycopg.connect(settings.database_dsn("orders")) as conn:
        traceparent = orders_store.saga_traceparent(conn, parsed)
    if traceparent is None:
        raise StackError(f"no order {order_id}")
    trace_id = trace_id_of(traceparent)
    if not trace_id:
        raise StackError(f"order {order_id} was placed without a trace (tracing was off)")
    deadline = time.monotonic() + wait_s
    seen, changed_at = -1, time.monotonic()
    with psycopg.connect(settings.database_dsn(TELEMETRY_DATABASE)) as conn:
        while True:
            spans = span_store.spans_of(conn, trace_id)
            if len(spans) != seen:
                seen, changed_at = len(spans), time.monotonic()
            settled = spans and time.monotonic() - changed_at >= SETTLED_AFTER_S
            if settled or time.monotonic() >= deadline:
                return spans
            time.sleep(0.25)
