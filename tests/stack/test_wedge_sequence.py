"""Issue 13's afternoon, replayed: broker and Connect SIGKILLed and brought back three
times, then PostgreSQL's postmaster SIGKILLed. Every consumer must be consuming again
within seconds, and an order placed afterwards must go all the way through.

On the embedded broker this sequence used to leave the consumer groups of inventory and
payments "rebalancing" for good (a dead member the broker never expired); consumers now
own partitions through advisory locks in their own databases and need no group.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from choreo.stack import launcher, manifest
from choreo.stack.errors import StackError
from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop

pytestmark = [pytest.mark.stack, pytest.mark.slow]



def consuming(settings: StackSettings, name: str) -> bool:
    try:
        health = requests.get(f"http://127.0.0.1:{settings.port_of(name)}/health",
                              timeout=2).json()
    except (requests.RequestException, ValueError):
        return False
    return health.get("status") == "ok" and int(health.get("partitions", 0)) > 0


def seconds_until_all_consume(settings: StackSettings, bound_s: float = 60.0) -> float:
    started = time.monotonic()
    while not all(consuming(settings, name) for name in manifest.consumers()):
        assert time.monotonic() - started < bound_s, "a consumer never got its partitions back"
        time.sleep(0.1)
    return time.monotonic() - started


def test_broker_connect_thrice_then_postgres_and_every_consumer_consumes_again(
    running_services: StackSettings,
) -> None:
    registry = launcher.registry_for(running_services)
    quiet = lambda line: None  # noqa: E731
    for _ in range(3):
        registry.kill("broker")
        registry.kill("connect")
        launcher.up(running_services, report=quiet)
    registry.kill("postgres")
    launcher.up(running_services, report=quiet)
    took = seconds_until_all_consume(running_services)
    print(f"\nafter 3 x (broker + Connect) and a PostgreSQL SIGKILL: every consumer owns"
          f" partitions again {took:.1f}s after the last `up`")
    shop = Shop(running_services)
    sku = shop.new_sku(available=5, unit_price_cents=700)
    order = shop.wait_terminal(place_as_a_client_would(shop, sku))
    assert order["status"] == "CONFIRMED", order


def place_as_a_client_would(shop: Shop, sku: str, give_up_s: float = 30.0) -> str:
    """orders-api answers 503 + Retry-After until its pool has reconnected after the
    PostgreSQL restart: retry with the same Idempotency-Key, as the 503 tells a client to."""
    key = str(uuid.uuid4())
    deadline = time.monotonic() + give_up_s
    while True:
        try:
            return shop.place(sku, 2, key=key)
        except StackError as error:
            if "503" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)
