"""The orders API while its database is away: 503 JSON with Retry-After, then back by itself.

A real ``python -m choreo.services.orders api`` process talks to the stack's real PostgreSQL
through a :class:`TcpGate`; closing the gate is the database becoming unreachable
(nothing listens on the port the API was given, every open connection is cut), and
reopening it is the database coming back, with the same API process throughout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from choreo.stack.settings import StackSettings
from tests.orders.tcp_gate import TcpGate
from tests.support import scratch_database, started_orders_api

pytestmark = pytest.mark.stack

NAME = "orders-api-outage-test"
DATABASE = "orders_outage_tests"
PORT_SHIFT = 50
"""This test's ports: the test stack's own, shifted again, so they stay within the
offset that keeps parallel checkouts apart and below the ephemeral range."""
TTL_S = 120
BODY = {"customer_id": "outage", "payment_token": "tok_ok",
        "items": [{"sku": "mug-white", "quantity": 1}]}


@pytest.fixture(scope="module")
def gate(running_stack: StackSettings) -> Iterator[TcpGate]:
    scratch_database(running_stack, DATABASE)
    with TcpGate(running_stack.postgres_port + PORT_SHIFT, running_stack.postgres_port) as gate:
        yield gate


@pytest.fixture(scope="module")
def api(running_stack: StackSettings, gate: TcpGate) -> Iterator[str]:
    port = running_stack.port_of("orders-api") + PORT_SHIFT
    yield from started_orders_api(running_stack, NAME, port, {
        "CHOREO_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{gate.listen_port}/{DATABASE}",
        "CHOREO_ORDER_DEADLINE_S": "30", "CHOREO_RESERVATION_TTL_S": str(TTL_S)})


def post(base: str, body: dict[str, Any], key: str) -> requests.Response:
    return requests.post(f"{base}/orders", json=body, headers={"Idempotency-Key": key},
                         timeout=15)


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "database_unavailable"


def test_503_while_the_database_is_away_then_back_without_a_restart(
        api: str, gate: TcpGate) -> None:
    placed = post(api, BODY, f"before-{uuid.uuid4()}")
    assert placed.status_code == 202
    order_url = f"{api}/orders/{placed.json()['id']}"

    gate.close()
    try:
        key = f"during-{uuid.uuid4()}"
        started = time.monotonic()
        assert_unavailable(post(api, BODY, key))
        assert_unavailable(requests.get(order_url, timeout=15))
        assert_unavailable(requests.post(f"{order_url}/cancel", timeout=15))
        assert time.monotonic() - started < 15  # each waits DB_WAIT_S at most, not 30 s
        assert requests.get(f"{api}/health", timeout=15).status_code == 503
    finally:
        gate.open()

    deadline = time.monotonic() + 20
    while (again := post(api, BODY, key)).status_code == 503:  # what a client does
        assert_unavailable(again)
        assert time.monotonic() < deadline, "the API did not recover within 20 s"
        time.sleep(0.5)
    assert again.status_code == 202, again.text
    assert requests.get(order_url, timeout=10).status_code == 200
    assert post(api, BODY, key).json()["id"] == again.json()["id"]  # one order per key


@pytest.mark.parametrize(("deadline_s", "status"), [(TTL_S, 422), (TTL_S + 1, 422),
                                                     (TTL_S - 1, 202)])
def test_a_deadline_must_be_below_the_reservation_ttl(api: str, deadline_s: int,
                                                      status: int) -> None:
    response = post(api, {**BODY, "deadline_s": deadline_s}, f"ttl-{uuid.uuid4()}")

    assert response.status_code == status, response.text
    if status == 422:
        error = response.json()["error"]
        assert error["field"] == "deadline_s"
        assert f"reservation TTL of {TTL_S}" in error["message"]
