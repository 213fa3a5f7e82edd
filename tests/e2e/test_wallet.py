"""Orders paid from the wallet, end to end on the running stack: debited and confirmed,
declined and cancelled (stock back), cancelled after confirmation and refunded with its
points taken back; the psp never hears of a wallet order."""

from __future__ import annotations

import uuid

import pytest

from choreo.testkit.shop import Shop
from tests.support import collect, eventually, holds, keyed, read_as_cloudevent

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def customer_with(shop: Shop, balance_cents: int) -> str:
    customer = f"wallet-{uuid.uuid4().hex[:8]}"
    assert shop.top_up(customer, balance_cents) == balance_cents
    return customer


def test_a_wallet_order_is_debited_confirmed_and_earns_points(shop: Shop) -> None:
    customer = customer_with(shop, 10_000)
    sku = shop.new_sku(available=5, unit_price_cents=1250)

    order_id = shop.place(sku, 2, token="", customer=customer, method="wallet")
    order = shop.wait_terminal(order_id)

    assert (order["status"], order["total_cents"]) == ("CONFIRMED", 2500)
    assert "WalletDebited" in [entry["event_type"] for entry in order["history"]]
    eventually(lambda: holds(shop.wallet(customer) == (7500, 25)))
    assert shop.net_paid(order_id) == (0, 0)
    [debited] = collect(shop.settings.kafka_bootstrap, "wallet.events", lambda m: len(m) >= 1,
                        accept=keyed(order_id))
    assert read_as_cloudevent(debited).get_type() == "WalletDebited"


def test_a_short_balance_cancels_the_order_and_gives_the_stock_back(shop: Shop) -> None:
    customer = customer_with(shop, 500)
    sku = shop.new_sku(available=3, unit_price_cents=1000)

    order = shop.wait_terminal(shop.place(sku, 1, token="", customer=customer,
                                          method="wallet"))

    assert (order["status"], order["reason"]) == ("CANCELLED", "wallet_declined")
    eventually(lambda: holds(shop.stock(sku) == {"available": 3, "reserved": 0, "sold": 0}))
    assert shop.wallet(customer) == (500, 0)


def test_a_cancel_after_confirmation_refunds_the_wallet_and_takes_the_points_back(
        shop: Shop) -> None:
    customer = customer_with(shop, 4000)
    sku = shop.new_sku(available=2, unit_price_cents=3000)
    order_id = shop.place(sku, 1, token="", customer=customer, method="wallet")
    assert shop.wait_terminal(order_id)["status"] == "CONFIRMED"
    eventually(lambda: holds(shop.wallet(customer) == (1000, 30)))

    shop.api.cancel(order_id)

    eventually(lambda: holds(shop.wallet(customer) == (4000, 0)))
    order = shop.wait_for(order_id, lambda o: "WalletRefunded" in
                          [entry["event_type"] for entry in o["history"]])
    assert order["status"] == "CANCELLED"
    eventually(lambda: holds(shop.stock(sku) == {"available": 2, "reserved": 0, "sold": 0}))
