"""Emit an event in the caller's database transaction: the transactional outbox.

Each row is inserted and deleted in the same transaction. Debezium reads the insert
from the write-ahead log (the publication does not even publish the delete), so the
event is delivered exactly when the state change commits, while the table stays empty
and needs no clean-up job, partitioning or vacuum tuning. The price is that the outbox
cannot be queried for history; ``GET /orders/{id}`` keeps its own saga history instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg

from outbox.codec import EventCodec
from outbox.constants import CLOUDEVENTS_SPECVERSION
from outbox.tracing import current_traceparent

INSERT_ROW = """
INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, dataschema, source,
                    specversion, occurred_at, traceparent)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
DELETE_ROW = "DELETE FROM outbox WHERE id = %s"


class OutboxWriter:
    def __init__(self, codec: EventCodec, source: str) -> None:
        """``source`` becomes the CloudEvents ``ce_source`` of every event (the service)."""
        self.codec = codec
        self.source = source

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
        event_id, row = self._row(event_type, aggregate_id, payload)
        conn.execute(INSERT_ROW, row)
        conn.execute(DELETE_ROW, (event_id,))
        return event_id

    async def emit_async(
        self,
        conn: psycopg.AsyncConnection[Any],
        event_type: str,
        aggregate_id: str,
        payload: Mapping[str, Any],
    ) -> uuid.UUID:
        """``emit`` for an asyncio service (the HTTP intake) on an async connection."""
        event_id, row = self._row(event_type, aggregate_id, payload)
        await conn.execute(INSERT_ROW, row)
        await conn.execute(DELETE_ROW, (event_id,))
        return event_id

    def _row(self, event_type: str, aggregate_id: str, payload: Mapping[str, Any]
             ) -> tuple[uuid.UUID, tuple[object, ...]]:
        data, schema = self.codec.encode(event_type, payload)
        event_id = uuid.uuid4()
        occurred_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return event_id, (
            event_id, schema.aggregate, aggregate_id, event_type, data, schema.reference,
            self.source, CLOUDEVENTS_SPECVERSION, occurred_at, current_traceparent(),
        )
