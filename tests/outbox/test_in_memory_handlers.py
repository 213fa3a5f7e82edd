"""A handler's logic tested with no database and no broker (``InMemoryHandlers``)."""

from __future__ import annotations

from typing import Any

import pytest

from choreo.outbox import Handler, OutboxWriter, ReceivedEvent
from choreo.outbox.errors import EventValidationError
from choreo.outbox.testing import Emitted, InMemoryHandlers
from choreo.schemas.catalog import SCHEMA_DIR

PLACED = {"order_id": "o-1", "customer_id": "c-1", "items": [{"sku": "mug", "quantity": 2}],
          "payment_token": "tok_ok", "deadline_at": "2030-01-01T00:00:00Z"}


def build_handlers(writer: OutboxWriter) -> dict[str, Handler]:
    def placed(event: ReceivedEvent, conn: Any) -> None:
        conn.execute("INSERT INTO seen (order_id) VALUES (%s)", (event.aggregate_id,))
        with conn.cursor() as cursor:
            assert cursor.execute("SELECT 1 FROM seen").fetchone() is None  # no rows here
        total = 100 * sum(item["quantity"] for item in event.payload["items"])
        writer.emit(conn, "OrderConfirmed", event.aggregate_id,
                    {"order_id": event.aggregate_id, "total_cents": total})

    def cancelled(event: ReceivedEvent, conn: Any) -> None:
        writer.emit(conn, "OrderConfirmed", event.aggregate_id, {"order_id": 1})  # wrong

    return {"OrderPlaced": placed, "OrderCancelled": cancelled}


@pytest.fixture
def handlers() -> InMemoryHandlers:
    return InMemoryHandlers(build_handlers, SCHEMA_DIR)


def test_a_delivered_event_shows_what_its_handler_emitted_and_ran(
        handlers: InMemoryHandlers) -> None:
    assert handlers.deliver("OrderPlaced", "o-1", PLACED) == [
        Emitted("OrderConfirmed", "o-1", {"order_id": "o-1", "total_cents": 200})]
    sql = [query for query, _ in handlers.connection.statements]
    assert sql[0].startswith("INSERT INTO seen") and sql[1] == "SELECT 1 FROM seen"
    assert "INSERT INTO outbox" in sql[2]


def test_what_the_schemas_forbid_fails_as_it_would_for_real(
        handlers: InMemoryHandlers) -> None:
    with pytest.raises(EventValidationError):
        handlers.deliver("OrderPlaced", "o-1", {**PLACED, "items": "two mugs"})
    with pytest.raises(EventValidationError):
        handlers.deliver("OrderCancelled", "o-1", {"order_id": "o-1", "reason": "customer"})
