"""One order whose charge keeps failing costs the other orders nothing (issue 21).

The psp answers ``tok_error`` with a 500 on every attempt, without capturing. Payments
used to retry it in place for the transient window (120 s) while every partition of
the process waited, so the orders placed after it passed their 30 s deadline and were
cancelled. Now the charge is retried on its order's own schedule: the ten orders after it
are confirmed at their usual pace, and the failing order is cancelled at its deadline
with nothing captured. Prints the ten orders' times to CONFIRMED.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter

import pytest

from choreo.testkit.shop import Shop

pytestmark = [pytest.mark.stack, pytest.mark.slow]

FAILING_DEADLINE_S = 10


def test_a_failing_charge_does_not_hold_up_the_orders_after_it(shop: Shop) -> None:
    sku = shop.new_sku(available=20)
    failing = shop.place(sku, 1, token="tok_error", deadline_s=FAILING_DEADLINE_S)
    # Payments charges once the stock is reserved: the ten come while it is failing (in
    # the same batch as the failing charge, they would be committed before its retries).
    shop.wait_for(failing, lambda o: "StockReserved" in [e["event_type"] for e in o["history"]])
    time.sleep(1)
    placed = {}
    for _ in range(10):
        placed[shop.place(sku, 1)] = time.monotonic()
    took, ended = {}, {}
    for order_id, at in placed.items():
        ended[order_id] = shop.wait_terminal(order_id)["status"]
        took[order_id] = time.monotonic() - at
    print(f"\nten orders after a tok_error order: {Counter(ended.values())}, terminal after"
          f" p50 {statistics.median(took.values()):.2f}s, max {max(took.values()):.2f}s")
    assert set(ended.values()) == {"CONFIRMED"}

    order = shop.wait_terminal(failing)
    assert (order["status"], order["reason"]) == ("CANCELLED", "timeout"), order
    assert shop.net_paid(failing) == (0, 0)
