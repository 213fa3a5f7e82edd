"""Customers hear how their orders went, once per order and kind, on the channel they
chose; counted on the provider's side (the notifier's ledger), on the running stack."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop
from tests.support import eventually, holds

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def register(settings: StackSettings, email: str, channel: str = "email") -> str:
    response = requests.post(
        f"http://127.0.0.1:{settings.port_of('users')}/customers",
        json={"name": "Ada", "email": email,
              "preferences": {"channel": channel, "address": "Berlin"}},
        headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def messages(settings: StackSettings, order_id: str) -> list[dict[str, Any]]:
    response = requests.get(f"http://127.0.0.1:{settings.port_of('notifier')}/messages",
                            params={"reference": order_id}, timeout=10)
    response.raise_for_status()
    return list(response.json())


def kinds(settings: StackSettings, order_id: str) -> list[str]:
    return [m["idempotency_key"].split(":")[1] for m in messages(settings, order_id)]


def test_a_confirmed_then_cancelled_order_is_told_three_times_once_each(
        running_services: StackSettings, shop: Shop) -> None:
    customer = register(running_services, f"ada-{uuid.uuid4().hex[:6]}@example.org")
    sku = shop.new_sku(available=2)
    order_id = shop.place(sku, 1, customer=customer)
    assert shop.wait_terminal(order_id)["status"] == "CONFIRMED"
    eventually(lambda: holds(kinds(running_services, order_id) == ["confirmed"]))

    shop.api.cancel(order_id)

    eventually(lambda: holds(sorted(kinds(running_services, order_id))
                             == ["cancelled", "confirmed", "refunded"]))
    assert all(m["requests"] == 1 for m in messages(running_services, order_id))


def test_a_customer_who_chose_none_and_a_guest_get_nothing(
        running_services: StackSettings, shop: Shop) -> None:
    quiet = register(running_services, "quiet@example.org", channel="none")
    sku = shop.new_sku(available=2)
    orders = [shop.place(sku, 1, customer=customer) for customer in (quiet, "guest-42")]
    for order_id in orders:
        shop.wait_terminal(order_id)

    assert [messages(running_services, order_id) for order_id in orders] == [[], []]


def test_a_flaky_provider_still_tells_once(running_services: StackSettings,
                                           shop: Shop) -> None:
    customer = register(running_services, f"bo+flaky-{uuid.uuid4().hex[:6]}@example.org")
    order_id = shop.place(shop.new_sku(available=1), 1, customer=customer)
    assert shop.wait_terminal(order_id)["status"] == "CONFIRMED"

    eventually(lambda: holds(kinds(running_services, order_id) == ["confirmed"]))
