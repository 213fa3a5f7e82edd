"""A service emits only what it declares: the writer refuses the rest before any write.

Pure: the writer validates and encodes before it touches a connection, and the in-memory
connection records what would have run.
"""

from __future__ import annotations

from typing import Any

import pytest

from choreo.outbox import ConfigError, Handler, OutboxWriter, ReceivedEvent
from choreo.outbox.errors import PermanentError, UndeclaredEvent
from choreo.outbox.testing import InMemoryConnection, InMemoryHandlers
from choreo.schemas.catalog import SCHEMA_DIR

CONFIRMED = {"order_id": "o-1", "total_cents": 500}


def test_an_undeclared_type_is_refused_and_nothing_is_written() -> None:
    writer = OutboxWriter.for_schemas("orders", SCHEMA_DIR, emits={"OrderPlaced"})
    conn = InMemoryConnection()

    with pytest.raises(UndeclaredEvent, match=r"orders emits OrderConfirmed, which it does"
                                              r" not declare \(emits: OrderPlaced\)"):
        writer.emit(conn, "OrderConfirmed", "o-1", CONFIRMED)  # type: ignore[arg-type]

    assert conn.statements == []
    assert issubclass(UndeclaredEvent, PermanentError)  # dead-lettered, never retried


def test_a_declared_type_is_written() -> None:
    writer = OutboxWriter.for_schemas("orders", SCHEMA_DIR, emits={"OrderConfirmed"})
    conn = InMemoryConnection()

    writer.emit(conn, "OrderConfirmed", "o-1", CONFIRMED)  # type: ignore[arg-type]

    assert [query.split()[:3] for query, _ in conn.statements] == [["INSERT", "INTO", "outbox"]]


def test_a_declared_type_without_a_schema_fails_at_start_naming_it() -> None:
    with pytest.raises(ConfigError, match="shipping declares it emits LabelPrinted, which has"
                                          " no schema in its schema folder"):
        OutboxWriter.for_schemas("shipping", SCHEMA_DIR, emits={"OrderPlaced", "LabelPrinted"})


def test_a_handler_that_emits_an_undeclared_type_fails_as_its_service_would() -> None:
    def build_handlers(writer: OutboxWriter) -> dict[str, Handler]:
        def placed(event: ReceivedEvent, conn: Any) -> None:
            writer.emit(conn, "OrderConfirmed", event.aggregate_id,
                        {"order_id": event.aggregate_id, "total_cents": 1})
        return {"OrderPlaced": placed}

    handlers = InMemoryHandlers(build_handlers, SCHEMA_DIR, emits={"OrderRejected"})

    with pytest.raises(UndeclaredEvent):
        handlers.deliver("OrderPlaced", "o-1", {
            "order_id": "o-1", "customer_id": "c-1", "items": [{"sku": "mug", "quantity": 1}],
            "payment_token": "tok_ok", "deadline_at": "2030-01-01T00:00:00Z"})
    assert handlers.connection.statements == []
