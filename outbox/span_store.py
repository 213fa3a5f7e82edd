"""Finished spans kept in PostgreSQL, so a saga's trace can be read back without a collector.

The embedded stack has no tracing backend to install, but it runs PostgreSQL: every
process exports its spans through a ``BatchSpanProcessor`` (a background thread, off the
hot path) into the ``recent_spans`` table of a ``telemetry`` database, where tail
sampling (``outbox.tail_sampling``) keeps the traces worth keeping in ``spans``; ``choreo
trace`` reads both by trace id. Export failures drop the batch (the SDK's contract for
exporters): tracing never slows down or fails a saga. The exporter's own statements are
not traced, or every export would create spans to export.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

from choreo.outbox.tail_sampling import COLUMNS, Decider, TailSampling

SCHEMA = Path(__file__).resolve().parent / "span_store.sql"
INSERT = """
INSERT INTO recent_spans (trace_id, span_id, parent_id, service, name, kind, started_at, ended_at,
                   status, attributes)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
PRUNE = """
DELETE FROM spans WHERE ctid IN (
    SELECT ctid FROM spans WHERE ended_at < now() - make_interval(secs => %s) LIMIT 10000)
"""
PRUNE_EVERY_S = 60.0

log = logging.getLogger(__name__)


def _timestamp(nanoseconds: int | None) -> datetime | None:
    return None if nanoseconds is None else datetime.fromtimestamp(nanoseconds / 1e9, UTC)


def span_row(span: ReadableSpan) -> tuple[object, ...]:
    context = span.get_span_context()
    parent = span.parent
    return (
        format_trace_id(context.trace_id), format_span_id(context.span_id),
        format_span_id(parent.span_id) if parent is not None else None,
        str(span.resource.attributes.get("service.name", "unknown")), span.name,
        span.kind.name.lower(), _timestamp(span.start_time), _timestamp(span.end_time),
        span.status.status_code.name.lower(),
        json.dumps(dict(span.attributes or {}), default=str),
    )


class PostgresSpanExporter(SpanExporter):
    """Writes each exported batch in one transaction; decides the traces that are due
    (``sampling``) and prunes kept spans past ``retention_s``."""

    def __init__(self, dsn: str, retention_s: float = 24 * 3600.0,
                 sampling: TailSampling | None = None) -> None:
        self.dsn = dsn
        self.retention_s = retention_s
        self._decider = Decider(dsn, sampling or TailSampling())
        self._conn: psycopg.Connection[Any] | None = None
        self._pruned_at = 0.0
        self._decider_started = False
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = [span_row(span) for span in spans]
        with self._lock, suppress_instrumentation():
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(INSERT, rows)
                    if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
                        self._pruned_at = time.monotonic()
                        cursor.execute(PRUNE, (self.retention_s,))
            except psycopg.Error as error:
                log.warning("dropped %d spans: %s", len(rows), error)
                self._close()
                return SpanExportResult.FAILURE
            if not self._decider_started:  # the first export shows the store is wanted
                self._decider_started = True
                self._decider.start()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._decider.stop_event.set()
        with self._lock:
            self._close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, connect_timeout=2)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True)
class StoredSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    kind: str
    started_at: datetime
    ended_at: datetime
    status: str
    attributes: dict[str, Any]

    @property
    def duration_ms(self) -> float:
        return (self.ended_at - self.started_at).total_seconds() * 1000


SPANS_OF = f"""
SELECT {COLUMNS} FROM spans WHERE trace_id = %(trace)s
UNION ALL
SELECT {COLUMNS} FROM recent_spans WHERE trace_id = %(trace)s
ORDER BY started_at, ended_at DESC
"""


def spans_of(conn: psycopg.Connection[Any], trace_id: str) -> list[StoredSpan]:
    """One trace's spans, earliest first: kept, or not decided yet."""
    rows = conn.execute(SPANS_OF, {"trace": trace_id}).fetchall()
    return [StoredSpan(*row) for row in rows]
