"""Every path of the saga ends in the right state, with the right events, stock and money."""

from __future__ import annotations

import pytest

from infra.shop import Shop
from tests.support import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def events(order: dict) -> list[str]:
    return [entry["event_type"] for entry in order["history"]]


def test_confirmed(shop: Shop) -> None:
    sku = shop.new_sku(available=10, unit_price_cents=1250)
    order_id = shop.place(sku, 3)
    order = shop.wait_terminal(order_id)
    assert order["status"] == "CONFIRMED"
    assert order["total_cents"] == 3750
    assert events(order) == ["OrderPlaced", "StockReserved", "PaymentCaptured", "OrderConfirmed"]
    eventually(lambda: _assert(shop.stock(sku) == {"available": 7, "reserved": 0, "sold": 3}))
    assert shop.net_paid(order_id) == (3750, 0)


def test_rejected_out_of_stock_charges_nothing(shop: Shop) -> None:
    sku = shop.new_sku(available=2)
    order_id = shop.place(sku, 5)
    order = shop.wait_terminal(order_id)
    assert order["status"] == "REJECTED"
    assert "requested 5, available 2" in order["reason"]
    assert events(order) == ["OrderPlaced", "StockReservationFailed", "OrderRejected"]
    assert shop.stock(sku) == {"available": 2, "reserved": 0, "sold": 0}
    assert shop.net_paid(order_id) == (0, 0)


def test_cancelled_on_decline_releases_stock(shop: Shop) -> None:
    sku = shop.new_sku(available=4)
    order_id = shop.place(sku, 4, token="tok_decline")
    order = shop.wait_terminal(order_id)
    assert order["status"] == "CANCELLED"
    assert order["reason"] == "payment_declined"
    eventually(lambda: _assert(shop.stock(sku) == {"available": 4, "reserved": 0, "sold": 0}))
    assert shop.net_paid(order_id) == (0, 0)
    order = shop.wait_for(order_id, lambda o: "StockReleased" in events(o))
    assert events(order)[-1] == "StockReleased"


def test_customer_cancel_after_confirm_refunds_and_restocks(shop: Shop) -> None:
    sku = shop.new_sku(available=5, unit_price_cents=900)
    order_id = shop.place(sku, 2)
    assert shop.wait_terminal(order_id)["status"] == "CONFIRMED"
    assert shop.api.cancel(order_id)["status"] == "CANCELLED"
    order = shop.wait_for(order_id, lambda o: {"PaymentRefunded", "StockReleased"}
                          <= set(events(o)))
    assert order["status"] == "CANCELLED"
    assert shop.net_paid(order_id) == (1800, 1800)
    eventually(lambda: _assert(shop.stock(sku) == {"available": 5, "reserved": 0, "sold": 0}))


def test_timeout_releases_and_refunds_a_late_capture(shop: Shop) -> None:
    """The psp answers after the order's deadline: the capture that still happens is refunded."""
    sku = shop.new_sku(available=3, unit_price_cents=500)
    order_id = shop.place(sku, 1, token="tok_slow", deadline_s=1)
    order = shop.wait_terminal(order_id)
    assert (order["status"], order["reason"]) == ("CANCELLED", "timeout")
    eventually(lambda: _assert(shop.stock(sku) == {"available": 3, "reserved": 0, "sold": 0}))

    def money_returned() -> None:
        captured, refunded = shop.net_paid(order_id)
        assert captured == refunded

    eventually(money_returned)


def _assert(condition: bool) -> None:
    assert condition
