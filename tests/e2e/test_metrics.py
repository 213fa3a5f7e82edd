"""Every service's /metrics parses, follows Prometheus' naming, and shows the flow."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop
from tests.support import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]

CONSUMER_METRICS = {"choreo_events", "choreo_hop_seconds", "choreo_handler_seconds",
                    "choreo_consumer_lag", "choreo_dead_letters",
                    "choreo_replication_slot_lag_bytes", "choreo_outbox_pending_rows"}
EXPECTED = {
    "inventory": CONSUMER_METRICS,
    "payments": CONSUMER_METRICS | {"choreo_circuit_state"},
    "orders-worker": CONSUMER_METRICS | {"choreo_sagas", "choreo_saga_duration_seconds"},
    "orders-api": {"choreo_orders_shed"},
    "psp": set(),
}


def metrics_port(settings: StackSettings, service: str) -> int:
    return {"inventory": settings.port_of("inventory"),
            "payments": settings.port_of("payments"),
            "orders-worker": settings.port_of("orders-worker"),
            "orders-api": settings.port_of("orders-api"), "psp": settings.port_of("psp")}[service]


def families(settings: StackSettings, service: str) -> dict[str, object]:
    text = requests.get(f"http://127.0.0.1:{metrics_port(settings, service)}/metrics",
                        timeout=5).text
    return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.mark.parametrize("service", sorted(EXPECTED))
def test_metrics_parse_and_show_the_flow(shop: Shop, service: str) -> None:
    shop.wait_terminal(shop.place(shop.new_sku(available=5), 1))

    def complete() -> dict[str, object]:
        found = families(shop.settings, service)
        assert EXPECTED[service] <= set(found), EXPECTED[service] - set(found)
        return found

    found = eventually(complete, timeout_s=20)
    for name, family in found.items():
        if not name.startswith("choreo_") or name.endswith("_created"):
            continue  # the client library's own collectors, and creation timestamps
        assert family.documentation, f"{name} has no help text"
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        if "seconds" in name or "bytes" in name:
            assert name.endswith(("_seconds", "_bytes")), f"{name}: the unit goes last"
        assert not any(part in name for part in ("_ms", "_millis", "milliseconds")), name


def steady(read: Callable[[], float], quiet_s: float = 4.5, timeout_s: float = 60) -> float:
    """The value once it stopped moving for ``quiet_s`` (two rounds of the outcomes job):
    sagas of earlier tests that settled lately are counted first, not in this test."""
    deadline, value = time.monotonic() + timeout_s, read()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        value, previous = read(), value
        if value == previous:
            return value
    raise AssertionError(f"the counter kept moving for {timeout_s}s")


def test_saga_outcomes_are_counted_once_per_saga(shop: Shop) -> None:
    def settled() -> float:
        samples = families(shop.settings, "orders-worker")["choreo_sagas"].samples
        return sum(s.value for s in samples if s.name == "choreo_sagas_total"
                   and s.labels["status"] == "REJECTED" and s.labels["reason"] == "out_of_stock")

    before = steady(settled)
    sku = shop.new_sku(available=0)
    for _ in range(3):
        assert shop.wait_terminal(shop.place(sku, 1))["status"] == "REJECTED"

    def counted() -> None:
        assert settled() - before == 3

    eventually(counted, timeout_s=20)
