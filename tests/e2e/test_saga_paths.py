"""Every path of the saga ends in the right state, with the right events, stock and money."""

from __future__ import annotations

import json

import pytest
import requests

from choreo.stack import launcher
from choreo.testkit.shop import Shop
from tests.support import eventually, holds

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def events(order: dict) -> list[str]:
    return [entry["event_type"] for entry in order["history"]]


def test_confirmed(shop: Shop) -> None:
    sku = shop.new_sku(available=10, unit_price_cents=1250)
    order_id = shop.place(sku, 3)
    order = shop.wait_terminal(order_id)
    assert order["status"] == "CONFIRMED"
    assert order["total_cents"] == 3750
    # The history is in the order orders-worker saw the events. StockReserved and
    # PaymentCaptured come on different topics, so either can be seen first (or the
    # StockReserved only after the order is confirmed); OrderConfirmed is written in the
    # transaction that records PaymentCaptured.
    order = shop.wait_for(order_id, lambda o: len(events(o)) == 4)
    seen = events(order)
    assert sorted(seen) == sorted(["OrderPlaced", "StockReserved", "PaymentCaptured",
                                   "OrderConfirmed"]), seen
    assert seen[0] == "OrderPlaced"
    assert seen.index("OrderConfirmed") == seen.index("PaymentCaptured") + 1, seen
    eventually(lambda: holds(shop.stock(sku) == {"available": 7, "reserved": 0, "sold": 3}))
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
    eventually(lambda: holds(shop.stock(sku) == {"available": 4, "reserved": 0, "sold": 0}))
    assert shop.net_paid(order_id) == (0, 0)
    # Inventory releases on the PaymentDeclined itself, so its StockReleased (inventory's
    # topic) and the PaymentDeclined (payments' topic) reach orders-worker in either order.
    order = shop.wait_for(order_id, lambda o: len(events(o)) == 5)
    seen = events(order)
    assert sorted(seen) == sorted(["OrderPlaced", "StockReserved", "PaymentDeclined",
                                   "OrderCancelled", "StockReleased"]), seen
    assert seen.index("StockReleased") > seen.index("StockReserved"), seen
    assert seen.index("OrderCancelled") == seen.index("PaymentDeclined") + 1, seen


def test_customer_cancel_after_confirm_refunds_and_restocks(shop: Shop) -> None:
    sku = shop.new_sku(available=5, unit_price_cents=900)
    order_id = shop.place(sku, 2)
    assert shop.wait_terminal(order_id)["status"] == "CONFIRMED"
    assert shop.api.cancel(order_id)["status"] == "CANCELLED"
    order = shop.wait_for(order_id, lambda o: {"PaymentRefunded", "StockReleased"}
                          <= set(events(o)))
    assert order["status"] == "CANCELLED"
    assert shop.net_paid(order_id) == (1800, 1800)
    eventually(lambda: holds(shop.stock(sku) == {"available": 5, "reserved": 0, "sold": 0}))


def test_timeout_releases_and_refunds_a_late_capture(shop: Shop) -> None:
    """The psp answers after the order's deadline: the capture that still happens is refunded."""
    sku = shop.new_sku(available=3, unit_price_cents=500)
    order_id = shop.place(sku, 1, token="tok_slow", deadline_s=1)
    order = shop.wait_terminal(order_id)
    assert (order["status"], order["reason"]) == ("CANCELLED", "timeout")
    eventually(lambda: holds(shop.stock(sku) == {"available": 3, "reserved": 0, "sold": 0}))

    def money_returned() -> None:
        captured, refunded = shop.net_paid(order_id)
        assert captured == refunded

    eventually(money_returned)


def test_consumers_expose_health_metrics_and_json_logs_with_ids(shop: Shop) -> None:
    """What an operator reads: per-consumer metrics and one log line per handled event."""
    sku = shop.new_sku(available=5)
    order_id = shop.place(sku, 1)
    assert shop.wait_terminal(order_id)["status"] == "CONFIRMED"
    settings = shop.settings
    for service, port in (("inventory", settings.port_of("inventory")),
                          ("payments", settings.port_of("payments")),
                          ("orders", settings.port_of("orders-worker"))):
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/health", timeout=5).json()["status"] == "ok"
        metrics = requests.get(f"{base}/metrics", timeout=5).text
        assert f'choreo_events_total{{consumer="{service}"' in metrics
        assert "choreo_handler_seconds_bucket" in metrics
        assert "choreo_consumer_lag" in metrics

    def logged() -> None:
        log = launcher.registry_for(settings).log_file("inventory").read_text()
        lines = [json.loads(line) for line in log.splitlines()
                 if line.startswith("{") and order_id in line]
        handled = [line for line in lines if line["msg"] == "handled OrderPlaced"]
        assert handled, lines
        assert handled[0]["aggregate_id"] == order_id
        assert len(handled[0]["trace_id"]) == 32
        assert handled[0]["event_id"]

    eventually(logged)
