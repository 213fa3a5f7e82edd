"""``choreo trace ORDER_ID``: a saga's spans as a waterfall, its slowest wait and its hops.

The spans come from the span store every process of the embedded stack exports to
(``outbox.span_store``), found through the trace the order was placed under. The
slowest span is the one with the most time *of its own*: its duration less what its
children in the same service cover. A call's wait on another service stays the caller's,
so a slow psp shows as payments' call to it, not as the handler around that call.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg

from outbox import span_store
from outbox.span_store import StoredSpan
from outbox.tracing import trace_id_of
from services.orders import store as orders_store
from stack.errors import StackError
from stack.settings import TELEMETRY_DATABASE, StackSettings

BAR_MIN_WIDTH = 20


@dataclass(frozen=True)
class Line:
    span: StoredSpan
    offset_ms: float
    own_ms: float


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
    start = min(span.started_at for span in spans)
    return [Line(span, (span.started_at - start).total_seconds() * 1000, own_time_ms(span, spans))
            for span in sorted(spans, key=lambda s: (s.started_at, -s.duration_ms))]


def bar(line: Line, total_ms: float, width: int) -> str:
    begin = int(line.offset_ms / total_ms * width) if total_ms else 0
    length = max(1, round(line.span.duration_ms / total_ms * width)) if total_ms else 1
    return (" " * begin + "█" * length)[:width].ljust(width)


def render(order_id: str, spans: list[StoredSpan], with_sql: bool, width: int) -> list[str]:
    every = lines(spans)
    started = min(span.started_at for span in spans)
    total_ms = (max(span.ended_at for span in spans) - started).total_seconds() * 1000
    slowest = max(every, key=lambda line: line.own_ms)
    shown = [line for line in every if with_sql or not is_sql(line.span)]
    services = sorted({span.service for span in spans})
    bar_width = max(BAR_MIN_WIDTH, width - 78)
    out = [f"order {order_id}: trace {spans[0].trace_id}, {total_ms:,.0f} ms, {len(spans)} spans,"
           f" {len(services)} services ({', '.join(services)})",
           f"{'start':>9} {'took':>9}  {'service':<14}{'span':<44}"]
    for line in shown:
        mark = "  <- slowest" if line is slowest else ""
        out.append(f"{line.offset_ms:>7.0f}ms {line.span.duration_ms:>7.1f}ms  "
                   f"{line.span.service:<14}{label(line.span)[:43]:<44}"
                   f"|{bar(line, total_ms, bar_width)}|{mark}")
    hidden = len(every) - len(shown)
    if hidden:
        out.append(f"({hidden} database statements not shown; --sql shows them)")
    out.append(f"slowest: {slowest.span.service} {label(slowest.span)},"
               f" {slowest.own_ms:,.1f} ms of its own")
    hops = [line.span for line in every if line.span.name.startswith("relay ")]
    if hops:
        out.append("hops (event committed -> received):")
    for hop in hops:
        split = ""
        if "choreo.cdc_ms" in hop.attributes:
            split = (f"  (to the broker {hop.attributes['choreo.cdc_ms']} ms, then"
                     f" {hop.attributes['choreo.delivery_ms']} ms to the consumer)")
        out.append(f"  {hop.name.removeprefix('relay '):<34}{hop.duration_ms:>8.1f} ms{split}")
    return out


def saga_spans(settings: StackSettings, order_id: str, wait_s: float) -> list[StoredSpan]:
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
    with psycopg.connect(settings.database_dsn(TELEMETRY_DATABASE)) as conn:
        while True:
            spans = span_store.spans_of(conn, trace_id)
            if spans or time.monotonic() > deadline:
                return spans
            time.sleep(0.5)  # spans are exported in batches, about twice a second


def cmd_trace(args: argparse.Namespace, settings: StackSettings) -> int:
    spans = saga_spans(settings, args.order_id, args.wait)
    if not spans:
        print(f"no spans of order {args.order_id} in the span store (sampled out, or older"
              " than its retention)")
        return 1
    width = shutil.get_terminal_size((140, 20)).columns
    print("\n".join(render(args.order_id, spans, args.sql, width)))
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    trace = commands.add_parser("trace", help="a saga's spans as a waterfall: the slowest"
                                " wait and each hop's latency")
    trace.add_argument("order_id")
    trace.add_argument("--sql", action="store_true", help="show the database statements too")
    trace.add_argument("--wait", type=float, default=3.0,
                       help="seconds to wait for spans still being exported")
    trace.set_defaults(handler=cmd_trace)

