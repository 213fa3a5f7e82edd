"""``choreo trace ORDER_ID``: a saga's spans as a waterfall, its slowest wait and its hops.

The spans come from the span store every process of the embedded stack exports to
(``outbox.span_store``), found through the trace the order was placed under. The
slowest span is the one with the most time *of its own*: its duration less what its
children in the same service cover. A call's wait on another service stays the caller's,
so a slow psp shows as payments' call to it, not as the handler around that call.

Finding and reading the spans is ``console.waterfall``'s, shared with the web console's
saga page; this module draws them as text.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict
from typing import Any

from choreo.cli.output import add_json_flag, print_json
from choreo.console.waterfall import Line, hops, is_sql, label, lines, saga_spans, slowest, total_ms
from choreo.outbox.span_store import StoredSpan
from choreo.stack.settings import StackSettings

BAR_MIN_WIDTH = 20


def bar(line: Line, trace_ms: float, width: int) -> str:
    begin = int(line.offset_ms / trace_ms * width) if trace_ms else 0
    length = max(1, round(line.span.duration_ms / trace_ms * width)) if trace_ms else 1
    return (" " * begin + "█" * length)[:width].ljust(width)


def render(order_id: str, spans: list[StoredSpan], with_sql: bool, width: int) -> list[str]:
    every = lines(spans)
    took_ms = total_ms(spans)
    worst = slowest(every)
    shown = [line for line in every if with_sql or not is_sql(line.span)]
    services = sorted({span.service for span in spans})
    bar_width = max(BAR_MIN_WIDTH, width - 78)
    out = [f"order {order_id}: trace {spans[0].trace_id}, {took_ms:,.0f} ms, {len(spans)} spans,"
           f" {len(services)} services ({', '.join(services)})",
           f"{'start':>9} {'took':>9}  {'service':<14}{'span':<44}"]
    for line in shown:
        mark = "  <- slowest" if line is worst else ""
        out.append(f"{line.offset_ms:>7.0f}ms {line.span.duration_ms:>7.1f}ms  "
                   f"{line.span.service:<14}{label(line.span)[:43]:<44}"
                   f"|{bar(line, took_ms, bar_width)}|{mark}")
    hidden = len(every) - len(shown)
    if hidden:
        out.append(f"({hidden} database statements not shown; --sql shows them)")
    out.append(f"slowest: {worst.span.service} {label(worst.span)},"
               f" {worst.own_ms:,.1f} ms of its own")
    relayed = hops(every)
    if relayed:
        out.append("hops (event committed -> received):")
    for hop in relayed:
        split = ""
        if hop.cdc_ms is not None:
            split = (f"  (to the broker {hop.cdc_ms} ms, then"
                     f" {hop.delivery_ms} ms to the consumer)")
        out.append(f"  {hop.route:<34}{hop.took_ms:>8.1f} ms{split}")
    return out


def cmd_trace(args: argparse.Namespace, settings: StackSettings) -> int:
    spans = saga_spans(settings, args.order_id, args.wait)
    if not spans:
        print(f"no spans of order {args.order_id} in the span store (sampled out, or older"
              " than its retention)")
        return 1
    if args.json:
        print_json(as_document(args.order_id, spans, args.sql))
        return 0
    width = shutil.get_terminal_size((140, 20)).columns
    print("\n".join(render(args.order_id, spans, args.sql, width)))
    return 0


def as_document(order_id: str, spans: list[StoredSpan], with_sql: bool) -> dict[str, Any]:
    """The waterfall's facts: each span with its offset and own time, the slowest, hops."""
    every = lines(spans)
    worst = slowest(every)
    return {
        "order_id": order_id, "trace_id": spans[0].trace_id, "took_ms": total_ms(spans),
        "spans": [{**asdict(line.span), "duration_ms": line.span.duration_ms,
                   "offset_ms": line.offset_ms, "own_ms": line.own_ms}
                  for line in every if with_sql or not is_sql(line.span)],
        "slowest": {"service": worst.span.service, "span": label(worst.span),
                    "own_ms": worst.own_ms},
        "hops": [asdict(hop) for hop in hops(every)],
    }


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    trace = commands.add_parser("trace", help="a saga's spans as a waterfall: the slowest"
                                " wait and each hop's latency")
    trace.add_argument("order_id", help="the order's id")
    trace.add_argument("--sql", action="store_true", help="show the database statements too")
    trace.add_argument("--wait", type=float, default=3.0,
                       help="seconds to wait for spans still arriving (exported in batches)")
    add_json_flag(trace)
    trace.set_defaults(handler=cmd_trace)

