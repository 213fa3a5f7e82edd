"""Saga-aware tail sampling for the span store: keep every trace that shows a problem,
and a share of the rest, decided once the saga has settled.

Head sampling decides at the intake, before anything has gone wrong, so it keeps as many
failed sagas as it drops. Here every span first lands in ``recent_spans`` (unlogged: a
PostgreSQL crash loses only undecided traces, and the writes cost no WAL, which the
outbox slots would otherwise decode). A trace is decided when it has been quiet for
``quiet_s``; a saga's (one of its spans wrote a ``started_by`` event) only after one wrote
a ``settled_by`` event too, or after ``give_up_s`` without one: a saga that did not
settle is stuck, and is kept. Traces of no saga (an order looked up, a late fragment of
a trace decided before) are decided after ``quiet_s`` like the rest. Kept traces
move to ``spans``, where ``choreo trace`` and the console read them with the recent
ones; the others are deleted. A trace is kept when any of its spans

- ended in error (a handler that raised: retried, dead-lettered),
- wrote a ``keep_events`` event (a compensation or a refusal),
- or when it took longer than ``slow_ms`` end to end, or is a saga that never settled;

and otherwise when its trace id falls in ``keep_share`` (a hash of the id, so every
process and every run agrees). A span written after its trace was decided is decided
again with what came later: a customer's cancel a minute after a confirmation keeps the
cancel's part even when the confirmation's was dropped.

Every process exporting to the store runs a :class:`Decider` thread; a transaction-scoped
advisory lock lets one at a time decide, every ``every_s``, loaded or idle. What was
decided is tallied in ``span_sampling`` (traces, spans and bytes, kept and dropped), so
``choreo bench saga`` can say what the sampling saved. Settings (``TailSampling.from_env``):
``CHOREO_TRACE_KEEP_SHARE`` (0..1, default 0.1), ``CHOREO_TRACE_SLOW_MS`` (1000),
``CHOREO_TRACE_QUIET_S`` (10), ``CHOREO_TRACE_GIVE_UP_S`` (600),
``CHOREO_TRACE_STARTED_BY``, ``CHOREO_TRACE_SETTLED_BY`` and ``CHOREO_TRACE_KEEP_EVENTS``
(event types, comma-separated; the embedded stack names the saga's).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from opentelemetry.instrumentation.utils import suppress_instrumentation
from prometheus_client import Counter

from choreo.outbox import config

log = logging.getLogger(__name__)

TRACES = Counter("choreo_traces_sampled_total",
                 "Traces the span store's tail sampling decided, by decision", ["decision"])

LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('choreo.tail_sampling'))"
COLUMNS = "trace_id, span_id, parent_id, service, name, kind, started_at, ended_at, status," \
          " attributes"
DECIDE = f"""
WITH traces AS (
    SELECT trace_id, max(ended_at) AS last_end,
           bool_or(status = 'error') OR bool_or(name = ANY(%(keep_names)s))
               OR max(ended_at) - min(started_at) > make_interval(secs => %(slow_s)s)
               AS problem,
           bool_or(name = ANY(%(settle_names)s)) AS settled,
           bool_or(name = ANY(%(start_names)s)) AS saga
    FROM recent_spans GROUP BY trace_id
), decided AS (
    SELECT trace_id,
           problem OR (saga AND NOT settled)
               OR abs(hashtext(trace_id)::bigint) %% 10000 < %(share_basis)s AS keep
    FROM traces
    WHERE last_end < now() - make_interval(secs => CASE
        WHEN saga AND NOT settled THEN %(give_up_s)s ELSE %(quiet_s)s END)
), moved AS (
    DELETE FROM recent_spans AS r USING decided AS d WHERE r.trace_id = d.trace_id
    RETURNING r.*, d.keep
), kept AS (
    INSERT INTO spans ({COLUMNS}) SELECT {COLUMNS} FROM moved WHERE keep
), tally AS (
    SELECT keep, count(DISTINCT trace_id) AS traces, count(*) AS spans,
           coalesce(sum(pg_column_size(moved.*)), 0) AS bytes
    FROM moved GROUP BY keep
), counted AS (
    INSERT INTO span_sampling (kept, traces, spans, bytes)
    SELECT keep, traces, spans, bytes FROM tally
    ON CONFLICT (kept) DO UPDATE SET traces = span_sampling.traces + excluded.traces,
        spans = span_sampling.spans + excluded.spans, bytes = span_sampling.bytes + excluded.bytes
)
SELECT keep, traces FROM tally
"""
TOTALS = "SELECT kept, traces, spans, bytes FROM span_sampling"


def event_names(events: tuple[str, ...]) -> list[str]:
    """The outbox writer's span for each event type (``outbox.writer``)."""
    return [f"outbox write {event}" for event in events]


def _events(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in config.text(env, name).split(",") if part.strip())


@dataclass(frozen=True)
class TailSampling:
    keep_share: float = 0.1
    slow_ms: float = 1000.0
    quiet_s: float = 10.0
    give_up_s: float = 600.0
    started_by: tuple[str, ...] = ()
    settled_by: tuple[str, ...] = ()
    keep_events: tuple[str, ...] = ()
    every_s: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TailSampling:
        return cls(
            keep_share=config.number(env, "CHOREO_TRACE_KEEP_SHARE", cls.keep_share,
                                     ge=0, le=1),
            slow_ms=config.number(env, "CHOREO_TRACE_SLOW_MS", cls.slow_ms, gt=0),
            quiet_s=config.number(env, "CHOREO_TRACE_QUIET_S", cls.quiet_s, ge=0),
            give_up_s=config.number(env, "CHOREO_TRACE_GIVE_UP_S", cls.give_up_s, ge=0),
            started_by=_events(env, "CHOREO_TRACE_STARTED_BY"),
            settled_by=_events(env, "CHOREO_TRACE_SETTLED_BY"),
            keep_events=_events(env, "CHOREO_TRACE_KEEP_EVENTS"))


def decide(conn: psycopg.Connection[Any], policy: TailSampling) -> tuple[int, int] | None:
    """Decide every trace that is due, in one transaction; (kept, dropped) traces, or None
    when another process is deciding now."""
    with conn.transaction():
        if not conn.execute(LOCK).fetchone()[0]:  # type: ignore[index]
            return None
        counts = dict(conn.execute(DECIDE, {
            "keep_names": event_names(policy.keep_events),
            "settle_names": event_names(policy.settled_by),
            "start_names": event_names(policy.started_by),
            "slow_s": policy.slow_ms / 1000, "quiet_s": policy.quiet_s,
            "give_up_s": policy.give_up_s,
            "share_basis": round(policy.keep_share * 10000)}).fetchall())
    kept, dropped = counts.get(True, 0), counts.get(False, 0)
    TRACES.labels("kept").inc(kept)
    TRACES.labels("dropped").inc(dropped)
    return kept, dropped


@dataclass(frozen=True)
class Tally:
    traces: int = 0
    spans: int = 0
    bytes: int = 0


def totals(conn: psycopg.Connection[Any]) -> dict[bool, Tally]:
    """Everything decided so far, kept (True) and dropped (False)."""
    found = {kept: Tally(traces, spans, size)
             for kept, traces, spans, size in conn.execute(TOTALS).fetchall()}
    return {True: found.get(True, Tally()), False: found.get(False, Tally())}


class Decider(threading.Thread):
    """Decides what is due every ``every_s`` in the background, loaded or idle: a trace
    that settled just before the load stopped is decided too. Its own connection, its
    statements untraced (or deciding would make spans to decide)."""

    def __init__(self, dsn: str, policy: TailSampling) -> None:
        super().__init__(name="tail-sampling", daemon=True)
        self.dsn = dsn
        self.policy = policy
        self.stop_event = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.stop_event.wait(self.policy.every_s):
            with suppress_instrumentation():
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                    decide(conn, self.policy)
                except psycopg.Error as error:  # spans wait in recent_spans meanwhile
                    log.warning("tail sampling skipped a round: %s", error)
                    if conn is not None:
                        conn.close()
                    conn = None
        if conn is not None:
            conn.close()
