"""Tail sampling in the span store, on the real PostgreSQL: every trace with a problem is
kept, a share of the rest, and nothing is decided before its saga has settled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from choreo.outbox import span_store
from choreo.outbox.tail_sampling import Decider, TailSampling, decide, totals
from choreo.stack.launcher import apply_sql
from choreo.stack.settings import SAGA_SETTLED_BY, SAGA_STARTED_BY, SAGA_TROUBLE, StackSettings
from tests.support import eventually, holds, scratch_database

pytestmark = pytest.mark.stack

SAGA = TailSampling(keep_share=0.0, slow_ms=1000, quiet_s=10, give_up_s=600,
                    started_by=SAGA_STARTED_BY, settled_by=SAGA_SETTLED_BY,
                    keep_events=SAGA_TROUBLE)


@pytest.fixture
def store(running_stack: StackSettings) -> Iterator[psycopg.Connection[Any]]:
    url = scratch_database(running_stack, "tail_sampling_tests")
    apply_sql(url, span_store.SCHEMA)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE spans, recent_spans, span_sampling")
        yield conn


def trace(conn: psycopg.Connection[Any], *names: str, ago_s: float = 60, took_ms: float = 50,
          status: str = "unset") -> str:
    """A trace of one span per name, the last ending ``ago_s`` ago after ``took_ms``."""
    trace_id = uuid.uuid4().hex
    end = datetime.now(UTC) - timedelta(seconds=ago_s)
    start = end - timedelta(milliseconds=took_ms)
    for number, name in enumerate(names):
        conn.execute(span_store.INSERT, (trace_id, f"{number:016x}", None, "orders", name,
                                         "internal", start, end, status, "{}"))
    return trace_id


def kept(conn: psycopg.Connection[Any]) -> set[str]:
    return {row[0] for row in conn.execute("SELECT DISTINCT trace_id FROM spans")}


def undecided(conn: psycopg.Connection[Any]) -> set[str]:
    return {row[0] for row in conn.execute("SELECT DISTINCT trace_id FROM recent_spans")}


def test_problems_are_kept_and_the_untroubled_rest_dropped(
        store: psycopg.Connection[Any]) -> None:
    confirmed = ("outbox write OrderPlaced", "outbox write OrderConfirmed")
    fine = trace(store, *confirmed)
    compensated = trace(store, "outbox write OrderPlaced", "outbox write PaymentRefunded",
                        "outbox write OrderCancelled")
    failed = trace(store, *confirmed, status="error")
    slow = trace(store, *confirmed, took_ms=2500)

    assert decide(store, SAGA) == (3, 1)

    assert kept(store) == {compensated, failed, slow}
    assert fine not in undecided(store) and not undecided(store)
    assert [span.name for span in span_store.spans_of(store, compensated)] \
        == ["outbox write OrderPlaced", "outbox write PaymentRefunded",
            "outbox write OrderCancelled"]
    assert span_store.spans_of(store, fine) == []
    tally = totals(store)
    assert (tally[True].traces, tally[True].spans, tally[False].traces, tally[False].spans) \
        == (3, 7, 1, 2)
    assert tally[True].bytes > tally[False].bytes > 0


def test_nothing_is_decided_before_its_saga_settled_and_went_quiet(
        store: psycopg.Connection[Any]) -> None:
    running = trace(store, "outbox write OrderPlaced", ago_s=60)  # waits for its end
    just_settled = trace(store, "outbox write OrderPlaced", "outbox write OrderConfirmed",
                         ago_s=2)
    stuck = trace(store, "outbox write OrderPlaced", ago_s=700)  # never settled: kept
    looked_up = trace(store, "GET /orders/{order_id}", ago_s=60)  # no saga: the share's

    assert decide(store, SAGA) == (1, 1)

    assert kept(store) == {stuck} and looked_up not in undecided(store)
    assert undecided(store) == {running, just_settled}
    assert [span.name for span in span_store.spans_of(store, just_settled)] \
        == ["outbox write OrderPlaced", "outbox write OrderConfirmed"]  # readable meanwhile


def test_the_share_is_a_hash_of_the_trace_id_so_every_process_agrees(
        store: psycopg.Connection[Any]) -> None:
    traces = [trace(store, "outbox write OrderPlaced", "outbox write OrderConfirmed")
              for _ in range(400)]
    assert decide(store, replace(SAGA, keep_share=0.25)) is not None
    share = len(kept(store)) / len(traces)
    assert 0.15 < share < 0.35, share

    everything = trace(store, "outbox write OrderPlaced", "outbox write OrderConfirmed")
    assert decide(store, replace(SAGA, keep_share=1.0)) == (1, 0)
    assert everything in kept(store)


def test_one_process_decides_at_a_time(store: psycopg.Connection[Any],
                                       running_stack: StackSettings) -> None:
    with psycopg.connect(store.info.dsn, autocommit=True) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(hashtext('choreo.tail_sampling'))")
        assert decide(store, SAGA) is None


def test_a_decider_thread_decides_while_nothing_is_exported(
        store: psycopg.Connection[Any]) -> None:
    """The last sagas before the load stops are decided too, with no span coming after."""
    due = trace(store, "outbox write OrderPlaced", "outbox write OrderRejected")
    decider = Decider(store.info.dsn, replace(SAGA, every_s=0.2))
    decider.start()
    try:
        eventually(lambda: holds(due in kept(store)), 10)
    finally:
        decider.stop_event.set()
        decider.join(5)
