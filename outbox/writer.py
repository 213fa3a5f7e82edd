"""Emit an event in the caller's database transaction: the transactional outbox.

Debezium reads the inserted row from the write-ahead log, so the event is delivered
exactly when the state change commits. Rows stay in the table for a retention window
(pruned by ``prune``): if the broker's log is lost (its data folder deleted), the window
is published again from these rows (``outbox.relay``), so nothing committed within it
is lost. Consumers' inboxes absorb the copies.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from opentelemetry import trace

from choreo.outbox.codec import EventCodec
from choreo.outbox.errors import ConfigError, UndeclaredEvent
from choreo.outbox.tracing import TRACER, current_traceparent
from choreo.outbox.wire import CLOUDEVENTS_SPECVERSION, INSERT_ROW
from choreo.schemas.catalog import SchemaCatalog

PRUNE = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE created_at < now() - make_interval(secs => %s)
      AND seq <= (SELECT coalesce(min(after_seq), 9223372036854775807) FROM outbox_relay)
    LIMIT %s)
"""


def prune(conn: psycopg.Connection[Any], retention_s: float, batch: int = 5000) -> int:
    """Delete rows older than the retention window, a bounded batch at a time.

    The publication does not publish deletes, so pruning sends nothing downstream. Rows
    a polling relay has not published yet (``outbox_relay``) are kept whatever their age.
    """
    return conn.execute(PRUNE, (retention_s, batch)).rowcount


@dataclass(frozen=True)
class OutboxRow:
    """One event ready to insert: its id and the parameters of ``INSERT_ROW``."""

    event_id: uuid.UUID
    params: tuple[object, ...]

    @property
    def statement(self) -> tuple[str, tuple[object, ...]]:
        """The insert to run (sync or async connection alike)."""
        return INSERT_ROW, self.params


class OutboxWriter:
    def __init__(self, codec: EventCodec, source: str, *,
                 emits: Collection[str] | None) -> None:
        """``source`` becomes the CloudEvents ``ce_source`` of every event (the service).

        ``emits`` is what the service declares it emits: any other type is refused with
        :class:`UndeclaredEvent` before anything is written. Each declared type must have
        a schema in the codec's catalog (a ConfigError at start-up, not at the first
        emit). None: every type of the catalog, for tools that are not a service."""
        if emits is not None:
            missing = sorted(set(emits) - set(codec.catalog.event_types()))
            if missing:
                raise ConfigError(f"{source} declares it emits {', '.join(missing)}, which"
                                  f" {'has' if len(missing) == 1 else 'have'} no schema in"
                                  " its schema folder")
        self.codec = codec
        self.source = source
        self.emits = None if emits is None else frozenset(emits)

    @classmethod
    def for_schemas(cls, source: str, schemas: Path, *, emits: Collection[str]) -> OutboxWriter:
        """A writer for the events of a folder of ``<aggregate>/<Type>.v<N>.avsc`` files,
        emitting only the types ``emits`` declares."""
        return cls(EventCodec(SchemaCatalog.load(schemas)), source, emits=emits)

    def emit(
        self,
        conn: psycopg.Connection[Any],
        event_type: str,
        aggregate_id: str,
        payload: Mapping[str, Any],
    ) -> uuid.UUID:
        """Write one event; it reaches ``<aggregate>.events`` iff the transaction commits.

        The payload is validated against the latest schema first, so a bad event fails
        the caller's transaction instead of poisoning a topic.
        """
        with self.writing(event_type, aggregate_id, payload) as row:
            conn.execute(INSERT_ROW, row.params)
        return row.event_id

    @contextmanager
    def writing(self, event_type: str, aggregate_id: str, payload: Mapping[str, Any]
                ) -> Iterator[OutboxRow]:
        """The event as a row for the caller to insert with ``INSERT_ROW``, inside its span.

        This is ``emit`` without the connection, for a caller that is not a plain
        synchronous one (the HTTP intake's asyncio connection, a list of statements run
        by sync and async callers alike): the row is validated and encoded here, once,
        and the caller executes it while the write's span is current.
        """
        with self._span(event_type, aggregate_id):
            yield self._row(event_type, aggregate_id, payload)

    def _span(self, event_type: str, aggregate_id: str) -> AbstractContextManager[object]:
        """The write as a producer span: the row's ``traceparent`` is this span's, so the
        consumers' relay and handling spans hang under the write that caused them."""
        return TRACER.start_as_current_span(
            f"outbox write {event_type}", kind=trace.SpanKind.PRODUCER,
            attributes={"choreo.event_type": event_type, "choreo.aggregate_id": aggregate_id,
                        "choreo.source": self.source})

    def _row(self, event_type: str, aggregate_id: str, payload: Mapping[str, Any]
             ) -> OutboxRow:
        if self.emits is not None and event_type not in self.emits:
            raise UndeclaredEvent(f"{self.source} emits {event_type}, which it does not"
                                  f" declare (emits: {', '.join(sorted(self.emits)) or 'none'})")
        data, schema = self.codec.encode(event_type, payload)
        event_id = uuid.uuid4()
        occurred_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return OutboxRow(event_id, (
            event_id, schema.aggregate, aggregate_id, event_type, data, schema.reference,
            self.source, CLOUDEVENTS_SPECVERSION, occurred_at, current_traceparent(),
        ))
