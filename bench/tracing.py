"""``choreo bench tracing``: what the span store's tail sampling keeps, and what it saves.

A steady load in which a share of the orders is declined by the psp (refunded nothing,
cancelled and released: a compensated saga), as ``bench saga`` runs it otherwise. When
every saga of the run has settled and its trace has been decided, it prints what the
sampling wrote and kept (traces, spans and bytes, from ``span_sampling``), the CPU per
saga (compare a stack started with ``CHOREO_TRACE_KEEP_SHARE=1``: every trace kept), and
how many of the run's problem sagas, those not confirmed or slower than the sampling's
threshold, still show their trace, which should be all of them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

import psycopg

from choreo.bench.saga import figures, print_table, steady, stock_bench_skus, summary
from choreo.outbox import span_store
from choreo.outbox.tail_sampling import TailSampling, Tally, totals
from choreo.outbox.tracing import trace_id_of
from choreo.services.orders import store as orders_store
from choreo.stack.errors import ConfigError
from choreo.stack.settings import TELEMETRY_DATABASE, StackSettings

DECIDED_WITHIN_S = 90.0
"""After the last settlement: the policy's quiet time and a few rounds of deciding."""


def trace_ids(settings: StackSettings, order_ids: list[str]) -> dict[str, str]:
    with psycopg.connect(settings.database_dsn("orders")) as conn:
        found = {order_id: orders_store.saga_traceparent(
            conn, orders_store.parse_order_id(order_id)) for order_id in order_ids}
    return {order_id: trace_id_of(parent) for order_id, parent in found.items() if parent}


def undecided(conn: psycopg.Connection[Any], traces: list[str]) -> int:
    return conn.execute("SELECT count(DISTINCT trace_id) FROM recent_spans"
                        " WHERE trace_id = ANY(%s)", (traces,)).fetchone()[0]  # type: ignore[index]


def shown(conn: psycopg.Connection[Any], trace_id: str) -> bool:
    return bool(span_store.spans_of(conn, trace_id))


def difference(after: Tally, before: Tally) -> Tally:
    return Tally(after.traces - before.traces, after.spans - before.spans,
                 after.bytes - before.bytes)


def main(settings: StackSettings, policy: TailSampling, rate: float, seconds: float,
         declined: float) -> dict[str, object]:
    if not 0 <= declined <= 1:
        raise ConfigError(f"--declined {declined}: a share between 0 and 1")
    print(f"tracing benchmark: steady {rate:.0f}/s for {seconds:.0f}s, {declined:.0%} of the"
          f" orders declined; the stack keeps {settings.trace_keep_share:.0%} of the"
          " untroubled traces (CHOREO_TRACE_KEEP_SHARE)")
    stock_bench_skus(settings)
    telemetry = settings.database_dsn(TELEMETRY_DATABASE)
    with psycopg.connect(telemetry, autocommit=True) as conn:
        before = totals(conn)
    run = asyncio.run(steady(settings, rate, seconds, 128, declined_share=declined))
    print_table([run])
    traces = trace_ids(settings, list(run.settled))
    deadline = time.monotonic() + DECIDED_WITHIN_S
    with psycopg.connect(telemetry, autocommit=True) as conn:
        while (left := undecided(conn, list(traces.values()))) and time.monotonic() < deadline:
            time.sleep(1.0)
        after = totals(conn)
        problems = [order_id for order_id, saga in run.settled.items()
                    if saga.status != "CONFIRMED" or saga.latency_ms > policy.slow_ms]
        visible = sum(shown(conn, traces[order_id]) for order_id in problems
                      if order_id in traces)
    kept, dropped = (difference(after[flag], before[flag]) for flag in (True, False))
    written = Tally(kept.traces + dropped.traces, kept.spans + dropped.spans,
                    kept.bytes + dropped.bytes)
    print(f"\n{'span store':<12}{'traces':>9}{'spans':>10}{'bytes':>13}")
    for label, tally in (("written", written), ("kept", kept)):
        print(f"{label:<12}{tally.traces:>9}{tally.spans:>10}{tally.bytes:>13,}")
    share = kept.bytes / written.bytes if written.bytes else 0.0
    print(f"kept / written: {share:.1%} of the bytes"
          + (f"; {left} traces of the run still undecided" if left else ""))
    print(f"problem sagas (not confirmed, or slower than {policy.slow_ms:.0f} ms) whose trace"
          f" choreo trace shows: {visible}/{len(problems)}")
    print(summary([run]) + f"; stored {share:.1%} of the span bytes; problem traces shown"
          f" {visible}/{len(problems)}")
    return {**figures(run), "keep_share": settings.trace_keep_share,
            "written": asdict(written), "kept": asdict(kept), "kept_bytes_share": share,
            "problem_sagas": len(problems), "problem_traces_shown": visible,
            "undecided_traces": left}
