"""Two replicas of every consumer service on the real stack (``choreo up --replicas``).

The saga path tests and the concurrent-orders test of this folder run again here,
imported (not copied), against a stack whose inventory, payments and orders-worker each
run as two processes sharing their database and their partitions; this module's
``shop`` fixture, which they ask for, starts the second replicas first. Then: every
replica handled a share of the events (the test that would fail if the replicas did not
really share partitions), and a chaos run that SIGKILLs each consumer process by its
recorded pid under load, checked by the chaos invariants (nothing lost, nothing done
twice, stock and money conserved).

The second replicas are started on the session's stack and stopped (drained, by pid)
at the end of the module, so the rest of the session sees one process per service.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from choreo.chaos.resume import events_counted, metrics_url
from choreo.stack import drain, launcher, manifest
from choreo.stack.settings import StackSettings, replica_name
from choreo.testkit.shop import Shop
from tests.e2e.test_concurrent_orders import (  # noqa: F401 - collected here, with 2 replicas
    test_concurrent_orders_conserve_stock_and_money,
)
from tests.e2e.test_saga_paths import (  # noqa: F401 - collected here, with 2 replicas
    test_cancelled_on_decline_releases_stock,
    test_confirmed,
    test_customer_cancel_after_confirm_refunds_and_restocks,
    test_rejected_out_of_stock_charges_nothing,
    test_timeout_releases_and_refunds_a_late_capture,
)
from tests.support import chaos_checked, eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900)]

CONSUMER_SERVICES = manifest.consumers()

REPLICAS = ",".join(f"{service}=2" for service in CONSUMER_SERVICES)
PROCESSES = [replica_name(service, index) for service in CONSUMER_SERVICES for index in (1, 2)]
SECOND = [replica_name(service, 2) for service in CONSUMER_SERVICES]
SHARE_ORDERS = 30
"""Orders whose events must reach both replicas of each service: with 3 partitions per
topic split 2 + 1, all 30 keys landing on one replica's partitions has odds of about
(2/3)^30, 5 in a million."""


def _assert_owns_all(settings: StackSettings, names: list[str]) -> None:
    """Each named consumer process owns every partition of its topics (its /health)."""
    owned = {}
    for name in names:
        health = requests.get(f"http://127.0.0.1:{drain.metrics_port(settings, name)}/health",
                              timeout=2).json()
        owned[name] = (health["partitions"], health["partitions_in_topics"])
    assert all(mine == total > 0 for mine, total in owned.values()), owned


def handled(settings: StackSettings) -> dict[str, float]:
    """``choreo_events_total`` of every consumer process, by name."""
    return {name: events_counted(str(metrics_url(settings, name))) for name in PROCESSES}


@pytest.fixture(scope="module")
def replicated(running_services: StackSettings) -> Iterator[StackSettings]:
    """The session's stack with a second process of each consumer service, each owning
    some partitions; the second ones drained and stopped at the end."""
    settings = replace(running_services, replicas=REPLICAS)
    launcher.stop_supervisor(settings, report=lambda line: None)  # it would not watch them
    launcher.up(settings, report=lambda line: None)
    try:
        launcher.wait_shared(settings)
        yield settings
    finally:
        registry = launcher.registry_for(settings)
        for name in SECOND:
            registry.stop(name)
        # The first replicas take the stopped ones' partitions at their next lease tick;
        # until then those partitions are read by nobody, and the next module's first
        # saga would wait on them (a CI run saw its StockReserved arrive after the capture).
        eventually(lambda: _assert_owns_all(settings, [replica_name(service, 1)
                                                       for service in CONSUMER_SERVICES]))


@pytest.fixture(scope="module")
def shop(shop: Shop, replicated: StackSettings) -> Shop:
    """The session's shop, once the replicas run: what the imported tests use."""
    return shop


def test_every_replica_handles_a_share_of_the_events(replicated: StackSettings,
                                                      shop: Shop) -> None:
    before = handled(replicated)
    sku = shop.new_sku(available=SHARE_ORDERS)
    order_ids = [shop.place(sku, 1) for _ in range(SHARE_ORDERS)]
    assert all(shop.wait_terminal(order_id)["status"] == "CONFIRMED" for order_id in order_ids)

    def released() -> None:
        assert shop.stock(sku)["reserved"] == 0

    eventually(released)
    after = handled(replicated)
    share = {name: after[name] - before[name] for name in PROCESSES}
    print(f"\nevents handled per process over {SHARE_ORDERS} orders: {share}")
    assert all(count > 0 for count in share.values()), share


def test_killing_a_replica_under_load_loses_nothing_and_does_nothing_twice(
        replicated: StackSettings) -> None:
    """Each consumer process SIGKILLed once (by its recorded pid) while orders flow; the
    other replica takes its partitions meanwhile, then every chaos invariant must hold."""
    result = chaos_checked(replicated, PROCESSES, duration_s=40, rate=10, seed=2026)
    idle = [record.fault.target for record in result.faults if record.consuming_at_s is None]
    assert not idle, f"restarted, but never handled an event again: {idle}"
