"""``--json``: the commands a script reads print one JSON document, and the exit status
means the same as for the table."""

from __future__ import annotations

import json

import pytest

from choreo.stack.settings import StackSettings
from choreo.testkit.orders_client import saga_settled
from choreo.testkit.shop import Shop
from tests.support import choreo_cli

pytestmark = pytest.mark.stack


def as_json(*args: str) -> object:
    shown = choreo_cli(*args, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_status_lists_every_component_with_its_health(running_services: StackSettings) -> None:
    status = as_json("status", "--cpu-window", "0.5")
    assert isinstance(status, dict)
    components = {row["name"]: row for row in status["components"]}
    assert components["postgres"]["health"] == "healthy" and components["postgres"]["pid"]
    assert {"orders-api", "payments", "notification"} <= set(components)
    assert status["total_rss_bytes"] > 0 and status["cpu_window_s"] > 0


def test_stock_timeline_and_dead_letters(running_services: StackSettings) -> None:
    shop = Shop(running_services)
    sku = shop.new_sku(5, unit_price_cents=1250)
    order_id = shop.place(sku, 2)
    shop.wait_for(order_id, saga_settled, timeout_s=60)

    stock = as_json("stock")
    assert isinstance(stock, list)
    [level] = [level for level in stock if level["sku"] == sku]
    assert (level["unit_price_cents"], level["available"] + level["reserved"] + level["sold"]) \
        == (1250, 5)

    timeline = as_json("timeline", order_id)
    assert isinstance(timeline, dict)
    assert timeline["id"] == order_id and timeline["status"] == "CONFIRMED"
    assert [entry["event_type"] for entry in timeline["history"]][0] == "OrderPlaced"
    assert isinstance(timeline["told"], list)

    assert isinstance(as_json("dlq", "list"), list)


def test_a_benchmark_prints_its_summary_as_json_and_its_tables_on_stderr(
        running_stack: StackSettings) -> None:
    shown = choreo_cli("bench", "hop", "--rate", "20", "--seconds", "2", "--total", "100",
                       "--json")
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["hop_p50_ms"] > 0 and summary["raw_p50_ms"] > 0
    assert summary["max_events_per_s"] > 0
    assert "summary: hop p50" in shown.stderr  # the human part, out of the way
