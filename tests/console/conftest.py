"""What the console's tests share: a settled slow saga with its whole trace, a dead letter
of its own keyed by that saga's order (with one event parked behind it), and a console
served by aiohttp's test server with a known CSRF token."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from choreo.console import waterfall
from choreo.outbox import deadletter
from choreo.outbox import wire as c
from choreo.outbox.codec import EventCodec
from choreo.outbox.delivery import Delivery
from choreo.schemas.catalog import SchemaCatalog
from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop

TOKEN = "test-token-" + "x" * 20
SAGA_SERVICES = {"orders-api", "inventory", "payments", "psp", "orders-worker"}


@dataclass(frozen=True)
class Letter:
    service: str
    consumer: str
    seq: int
    parked_seq: int
    key: str


@pytest.fixture(scope="session")
def slow_order(running_services: StackSettings) -> str:
    """An order paid with tok_slow, CONFIRMED, once every service exported its spans."""
    shop = Shop(running_services)
    order_id = shop.place(shop.new_sku(available=5), 1, token="tok_slow")
    assert shop.wait_terminal(order_id)["status"] == "CONFIRMED"
    # The StockReserved comes on another topic than the capture: its history row can
    # land after the confirmation (docs/saga.md), so wait for all four rows.
    shop.wait_for(order_id, lambda order: len(order["history"]) == 4)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        spans = waterfall.saga_spans(running_services, order_id, wait_s=0)
        if {s.service for s in spans} >= SAGA_SERVICES and \
                "handle PaymentCaptured" in {s.name for s in spans}:
            break
        time.sleep(0.5)
    return order_id


def delivery(key: str, total_cents: int) -> Delivery:
    codec = EventCodec(SchemaCatalog.load())
    value, schema = codec.encode("OrderConfirmed", {"order_id": key, "total_cents": total_cents})
    headers = {c.HEADER_ID: str(uuid.uuid4()), c.HEADER_TYPE: "OrderConfirmed",
               c.HEADER_DATASCHEMA: schema.reference}
    return Delivery("order.events", 0, total_cents, key, value, headers)


@pytest.fixture
def letter(running_services: StackSettings, slow_order: str) -> Iterator[Letter]:
    """A dead entry and one parked behind it, in payments' database, for a consumer that
    does not exist (so nothing carries a request out: the test sees the request itself).
    Settled (discarded) afterwards, so no active entry outlives the test."""
    consumer = f"console-test-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(running_services.database_dsn("payments"), autocommit=True) as conn:
        deadletter.record(conn, consumer, delivery(slow_order, 1), status="dead",
                          reason="console test: handler failed", attempts=3)
        deadletter.record(conn, consumer, delivery(slow_order, 2), status="parked",
                          reason="parked behind the dead letter", attempts=0)
        dead, parked = [e.seq for e in deadletter.active_for_key(conn, consumer, slow_order)]
    yield Letter("payments", consumer, dead, parked, slow_order)
    with psycopg.connect(running_services.database_dsn("payments"), autocommit=True) as conn:
        for seq in (dead, parked):
            deadletter.set_status(conn, seq, "discarded")
