"""Traces go somewhere: one saga is one trace across every process, read back from the span
store, and a slow psp shows as payments' call to it."""

from __future__ import annotations

import time

import pytest

from choreo.cli.trace import render, saga_spans
from choreo.outbox.span_store import StoredSpan
from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SAGA_SERVICES = {"orders-api", "inventory", "payments", "psp", "orders-worker"}


def whole_trace(settings: StackSettings, order_id: str) -> list[StoredSpan]:
    """The saga's spans once every service has exported its part (batches, twice a second)."""
    deadline = time.monotonic() + 45  # a loaded machine exports late
    while True:
        spans = saga_spans(settings, order_id, wait_s=0)
        seen = {(span.service, span.name) for span in spans}
        complete = {span.service for span in spans} >= SAGA_SERVICES and \
            {("payments", "handle StockReserved"), ("orders-worker", "handle PaymentCaptured")} \
            <= seen
        if complete or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def test_a_slow_payment_is_found_in_its_trace(shop: Shop) -> None:
    sku = shop.new_sku(available=5)
    order_id = shop.place(sku, 1, token="tok_slow")
    assert shop.wait_terminal(order_id)["status"] == "CONFIRMED"

    spans = whole_trace(shop.settings, order_id)

    assert {span.service for span in spans} >= SAGA_SERVICES
    assert len({span.trace_id for span in spans}) == 1
    names = {span.name for span in spans}
    assert {"outbox write OrderPlaced", "relay order.events -> inventory",
            "relay inventory.events -> payments", "handle StockReserved"} <= names
    out = render(order_id, spans, with_sql=False, width=140)
    print("\n".join(out))
    slowest = next(line for line in out if line.startswith("slowest: "))
    assert slowest.startswith("slowest: payments POST /v1/charges"), "\n".join(out)

