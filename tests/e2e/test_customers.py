"""Customers across services: the users service tells, orders keeps its own projection.

On the running stack: a customer registered and then blocked over the users API cannot
place orders once orders has read the events (422 ``customer_blocked``, nothing
written), can again once unblocked, and a customer the users service never heard of is
a guest whose orders are taken.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop
from tests.support import collect, eventually, keyed, read_as_cloudevent

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def users(settings: StackSettings, method: str, path: str, body: dict[str, Any]
          ) -> dict[str, Any]:
    response = requests.request(method, f"http://127.0.0.1:{settings.port_of('users')}{path}",
                                json=body, headers={"Idempotency-Key": str(uuid.uuid4())},
                                timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()


def order_answer(settings: StackSettings, customer: str, sku: str) -> tuple[int, Any]:
    response = requests.post(
        f"http://127.0.0.1:{settings.port_of('orders-api')}/orders",
        json={"customer_id": customer, "items": [{"sku": sku, "quantity": 1}],
              "payment_token": "tok_ok"},
        headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=10)
    return response.status_code, response.json()


def test_a_blocked_customer_is_refused_from_orders_own_projection(
        running_services: StackSettings, shop: Shop) -> None:
    sku = shop.new_sku(available=10)
    customer = users(running_services, "POST", "/customers", {
        "name": "Mallory", "preferences": {"channel": "none", "address": "Berlin"}})["id"]
    assert order_answer(running_services, customer, sku)[0] == 202
    [registered] = collect(running_services.kafka_bootstrap, "customer.events",
                           lambda m: len(m) >= 1, accept=keyed(customer))
    assert read_as_cloudevent(registered).get_type() == "CustomerRegistered"

    users(running_services, "PUT", f"/customers/{customer}/status",
          {"blocked": True, "reason": "chargebacks"})

    def refused() -> Any:
        status, body = order_answer(running_services, customer, sku)
        assert status == 422, body
        return body
    body = eventually(refused)
    assert body["error"] == {"code": "customer_blocked", "field": "customer_id",
                             "message": "the customer is blocked: chargebacks"}

    users(running_services, "PUT", f"/customers/{customer}/status",
          {"blocked": False, "reason": "settled"})

    def taken() -> None:
        status, body = order_answer(running_services, customer, sku)
        assert status == 202, body
    eventually(taken)


def test_a_customer_users_never_registered_is_a_guest(running_services: StackSettings,
                                                      shop: Shop) -> None:
    sku = shop.new_sku(available=1)
    status, body = order_answer(running_services, f"guest-{uuid.uuid4().hex[:8]}", sku)

    assert status == 202, body
    assert shop.wait_terminal(body["id"])["status"] == "CONFIRMED"
