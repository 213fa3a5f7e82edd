"""A psp outage of several seconds under a few orders: payments opens its breaker and
pauses its partitions instead of retrying each charge, dead-letters nothing, and once
the psp answers again every order settles with its money right (real stack)."""

from __future__ import annotations

import time

import psycopg
import pytest
import requests

from choreo.outbox import deadletter
from choreo.testkit.shop import Shop
from tests.support import eventually, holds

pytestmark = [pytest.mark.stack, pytest.mark.slow]

OUTAGE_S = 30.0
"""The psp ends the outage by itself after this long at most; the test ends it earlier,
once the breaker was seen open (how soon that is depends on the machine's load)."""
HOLD_S = 2.0
"""How long the outage goes on after the pause was seen: charges stay held meanwhile."""
TOKENS = ["tok_ok", "tok_decline", "tok_ok", "tok_ok", "tok_decline", "tok_ok"]


def payments_health(shop: Shop) -> dict:
    port = shop.settings.port_of("payments")
    return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()


def test_psp_outage_pauses_payments_and_every_order_settles_after(shop: Shop) -> None:
    sku = shop.new_sku(available=100, unit_price_cents=700)
    assert payments_health(shop)["circuits"] == {"psp": "closed"}
    shop.psp.start_outage("fail", OUTAGE_S)
    outage_ends = time.monotonic() + OUTAGE_S
    try:
        orders = {shop.place(sku, 1 + i % 2, token=token): token
                  for i, token in enumerate(TOKENS)}
        seen = eventually(lambda: _paused(payments_health(shop)), timeout_s=OUTAGE_S - 10)
        assert seen["partitions"] > 0, "paused, not given up: the leases stay"
        assert seen["status"] == "ok"
        time.sleep(HOLD_S)
        assert time.monotonic() < outage_ends, "the breaker opened during the outage"
    finally:
        shop.psp.end_outage()
    back = time.monotonic()

    settled = {order_id: shop.wait_terminal(order_id) for order_id in orders}
    settle_s = time.monotonic() - back
    print(f"every order settled {settle_s:.1f}s after the psp was back")
    for order_id, token in orders.items():
        order = settled[order_id]
        if token == "tok_ok":
            assert order["status"] == "CONFIRMED", order
            [charge] = shop.psp.charges_for(order_id)  # captured once, never twice
            assert (charge.amount_cents, charge.amount_refunded_cents) == \
                (order["total_cents"], 0)
        else:
            assert (order["status"], order["reason"]) == ("CANCELLED", "payment_declined")
            assert shop.psp.charges_for(order_id) == []
    with psycopg.connect(shop.settings.database_dsn("payments"), autocommit=True) as conn:
        dead = [e for e in deadletter.list_entries(conn) if e.aggregate_key in orders]
    assert dead == [], "an outage is not a poison event"
    eventually(lambda: holds(payments_health(shop)["circuits"] == {"psp": "closed"}
                             and not payments_health(shop)["paused"]))


def _paused(health: dict) -> dict:
    assert health.get("circuits", {}).get("psp") == "open" and health.get("paused"), health
    return health
