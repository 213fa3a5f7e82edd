"""200 concurrent orders on 5 scarce SKUs: no oversell, stock conserved, money adds up."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from choreo.testkit.orders_client import OrdersClient, saga_settled
from choreo.testkit.shop import Shop
from tests.support import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ORDERS = 200
INITIAL_STOCK = 40


def test_concurrent_orders_conserve_stock_and_money(shop: Shop) -> None:
    rng = random.Random(7)
    prices = [500, 1250, 1999, 4900, 15000]
    skus = [shop.new_sku(INITIAL_STOCK, price) for price in prices]
    requests = []
    for _ in range(ORDERS):
        lines = rng.sample(skus, rng.choice([1, 1, 2]))
        requests.append(([{"sku": sku, "quantity": rng.randint(1, 3)} for sku in lines],
                         "tok_decline" if rng.random() < 0.15 else "tok_ok"))

    def place(request: tuple[list[dict], str]) -> str:
        items, token = request
        return OrdersClient(shop.settings.port_of("orders-api")).place(items, token)["id"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        order_ids = list(pool.map(place, requests))

    orders = [shop.wait_for(order_id, saga_settled, timeout_s=120) for order_id in order_ids]
    by_status = {s: sum(o["status"] == s for o in orders) for s in
                 ("CONFIRMED", "REJECTED", "CANCELLED")}
    assert sum(by_status.values()) == ORDERS
    assert by_status["CONFIRMED"] > 0 and by_status["REJECTED"] > 0, by_status

    def stock_settled() -> None:
        for sku in skus:
            stock = shop.stock(sku)
            sold = sum(line["quantity"] for o in orders if o["status"] == "CONFIRMED"
                       for line in o["items"] if line["sku"] == sku)
            assert stock["reserved"] == 0, (sku, stock)
            assert stock["sold"] == sold, (sku, stock, sold)
            assert stock["available"] + stock["sold"] == INITIAL_STOCK, (sku, stock)
            assert min(stock.values()) >= 0

    eventually(stock_settled, timeout_s=60)
    confirmed_total = sum(o["total_cents"] for o in orders if o["status"] == "CONFIRMED")
    net = 0
    for order in orders:
        charges = shop.psp.charges_for(order["id"])
        assert len(charges) <= 1, f"captured twice for {order['id']}"
        net += sum(c.amount_cents - c.amount_refunded_cents for c in charges)
    assert net == confirmed_total
    print(f"\n200 concurrent orders: {by_status}, confirmed total {confirmed_total} cents")
