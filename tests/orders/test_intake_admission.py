"""429 per client and 503 under a backlog, on a real ``python -m choreo.services.orders api``.

The API runs on the stack's real PostgreSQL, in a database of its own with no worker and
no connector behind it: nothing moves an order out of PENDING there, which is a saga
pipeline that has stopped making progress. Setting those orders CONFIRMED is the
pipeline catching up. Each test starts from an empty backlog.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests

from choreo.stack.settings import StackSettings
from tests.support import scratch_database, started_orders_api

pytestmark = pytest.mark.stack

NAME = "orders-api-admission-test"
DATABASE = "orders_admission_tests"
PORT_SHIFT = 60
"""This test's API port: the test stack's orders port shifted, like the outage test's."""
RATE_PER_S = 0.5
BURST = 3
MAX_PENDING = 6
SAMPLE_S = 0.2


@pytest.fixture(scope="module")
def dsn(running_stack: StackSettings) -> str:
    return scratch_database(running_stack, DATABASE)


@pytest.fixture(scope="module")
def api(running_stack: StackSettings, dsn: str) -> Iterator[str]:
    port = running_stack.port_of("orders-api") + PORT_SHIFT
    yield from started_orders_api(running_stack, NAME, port, {
        "CHOREO_DATABASE_URL": dsn,
        "CHOREO_ORDERS_RATE_LIMIT_PER_S": str(RATE_PER_S),
        "CHOREO_ORDERS_RATE_LIMIT_BURST": str(BURST),
        "CHOREO_ORDERS_MAX_PENDING": str(MAX_PENDING),
        "CHOREO_ORDERS_PENDING_SAMPLE_S": str(SAMPLE_S)})


@pytest.fixture(autouse=True)
def no_backlog(api: str, dsn: str) -> None:
    settle(dsn, "CANCELLED")
    time.sleep(3 * SAMPLE_S)  # the API has sampled the empty backlog


def settle(dsn: str, status: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE orders SET status = %s WHERE status = 'PENDING'", (status,))


def body(customer: str) -> dict[str, Any]:
    return {"customer_id": customer, "payment_token": "tok_ok",
            "items": [{"sku": "mug-white", "quantity": 1}]}


def post(base: str, customer: str, key: str | None = None, **headers: str
         ) -> requests.Response:
    headers["Idempotency-Key"] = key or str(uuid.uuid4())
    return requests.post(f"{base}/orders", json=body(customer), headers=headers, timeout=10)


def rows_with_key(dsn: str, key: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM orders WHERE idempotency_key = %s",
                            (key,)).fetchone()[0]


def shed_count(base: str, reason: str) -> float:
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    prefix = f'choreo_orders_shed_total{{reason="{reason}"}} '
    return float(next(line for line in metrics.splitlines() if line.startswith(prefix))
                 .removeprefix(prefix))


def assert_refused(response: requests.Response, status: int, code: str) -> int:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


def test_a_burst_from_one_client_gets_429_while_another_is_served(api: str, dsn: str) -> None:
    greedy, other = f"greedy-{uuid.uuid4()}", f"other-{uuid.uuid4()}"
    limited_before = shed_count(api, "rate_limited")

    assert [post(api, greedy).status_code for _ in range(BURST)] == [202] * BURST
    key = f"limited-{uuid.uuid4()}"
    wait_s = assert_refused(post(api, greedy, key), 429, "rate_limited")
    assert wait_s <= 1 / RATE_PER_S
    assert post(api, other).status_code == 202  # a bucket of its own
    assert rows_with_key(dsn, key) == 0
    assert shed_count(api, "rate_limited") == limited_before + 1

    time.sleep(wait_s)  # what a client that honours Retry-After does
    again = post(api, greedy, key)
    assert again.status_code == 202, again.text
    assert again.json()["replayed"] is False  # the 429 did not use the key
    assert rows_with_key(dsn, key) == 1


def test_a_retry_of_a_committed_order_is_a_replay_even_while_refusing(api: str,
                                                                       dsn: str) -> None:
    """Issue 21: refusals came before the key's look-up, so a client whose 202 was lost
    and who retried during a shed got 429/503 for an order that exists; and a replay was
    answered before its headers were checked (an empty X-API-Key got the stored 202)."""
    client, key = f"retrier-{uuid.uuid4()}", f"committed-{uuid.uuid4()}"
    first = post(api, client, key)
    assert first.status_code == 202, first.text
    while post(api, client).status_code != 429:  # spend the client's tokens
        pass

    again = post(api, client, key)
    assert again.status_code == 202, again.text
    assert (again.json()["id"], again.json()["replayed"]) == (first.json()["id"], True)
    assert rows_with_key(dsn, key) == 1
    reused = requests.post(f"{api}/orders", json={**body(client), "payment_token": "tok_decline"},
                           headers={"Idempotency-Key": key}, timeout=10)
    assert (reused.status_code, reused.json()["error"]["code"]) == (422,
                                                                  "idempotency_key_reused")
    assert_refused(post(api, client), 429, "rate_limited")  # a new order is still refused

    other, other_key = f"other-{uuid.uuid4()}", f"checked-{uuid.uuid4()}"
    assert post(api, other, other_key).status_code == 202
    empty_api_key = post(api, other, other_key, **{"X-API-Key": ""})
    assert empty_api_key.status_code == 400, empty_api_key.text
    assert empty_api_key.json()["error"]["field"] == "X-API-Key"


def test_an_api_key_is_the_client_whatever_the_customer(api: str) -> None:
    api_key = f"key-{uuid.uuid4()}"
    answers = [post(api, f"c-{n}-{uuid.uuid4()}", **{"X-API-Key": api_key})
               for n in range(BURST + 1)]

    assert [a.status_code for a in answers[:BURST]] == [202] * BURST
    assert_refused(answers[BURST], 429, "rate_limited")
    assert post(api, f"c-0-{uuid.uuid4()}").status_code == 202  # no key: its customer


def test_a_stalled_pipeline_gets_503_until_it_catches_up(api: str, dsn: str) -> None:
    for n in range(MAX_PENDING):  # one order per customer: no rate limit involved
        assert post(api, f"backlog-{n}-{uuid.uuid4()}").status_code == 202
    overloaded_before = shed_count(api, "overloaded")

    # Sampled within a sampling interval or so; on a busy machine the API's sampler can
    # run late, so wait for a first order to be shed rather than for a fixed time.
    deadline = time.monotonic() + 10
    while post(api, f"probe-{uuid.uuid4()}").status_code != 503:
        assert time.monotonic() < deadline, "the backlog was never seen in 10 s"
        time.sleep(SAMPLE_S)

    key, customer = f"shed-{uuid.uuid4()}", f"late-{uuid.uuid4()}"
    shed = post(api, customer, key)
    assert_refused(shed, 503, "overloaded")
    assert f"{MAX_PENDING} orders" in shed.json()["error"]["message"]
    assert rows_with_key(dsn, key) == 0
    assert_refused(post(api, customer, key), 503, "overloaded")  # still nothing written
    assert rows_with_key(dsn, key) == 0
    assert shed_count(api, "overloaded") >= overloaded_before + 3

    settle(dsn, "CONFIRMED")  # the pipeline catches up
    deadline = time.monotonic() + 10
    while (again := post(api, customer, key)).status_code == 503:
        assert time.monotonic() < deadline, "still 503 10 s after the backlog cleared"
        time.sleep(SAMPLE_S)
    assert again.status_code == 202, again.text
    assert again.json()["replayed"] is False
    assert rows_with_key(dsn, key) == 1
    assert "choreo_orders_pending " in requests.get(f"{api}/metrics", timeout=10).text
