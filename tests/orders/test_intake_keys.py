"""The orders intake as a caller off loopback meets it: ``python -m choreo.services.orders
api`` with API keys from a file answers 401 without one and takes the order with one; an
intake told to listen beyond loopback with no way to authenticate does not start."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from choreo.stack.settings import REPO_ROOT, StackSettings
from tests.support import scratch_database, started_orders_api

pytestmark = pytest.mark.stack

NAME = "orders-api-keys-test"
DATABASE = "orders_keys_tests"
PORT_SHIFT = 70
"""This test's API port: the test stack's orders port shifted, like admission's (60)."""
KEY = "k-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def api(running_stack: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    keys = tmp_path_factory.mktemp("secrets") / "api-keys"
    keys.write_text(f"retired-key\n{KEY}\n")
    port = running_stack.port_of("orders-api") + PORT_SHIFT
    yield from started_orders_api(running_stack, NAME, port, {
        "CHOREO_DATABASE_URL": scratch_database(running_stack, DATABASE),
        "CHOREO_API_KEYS_FILE": str(keys)})


def place(api: str, **headers: str) -> requests.Response:
    return requests.post(f"{api}/orders", json={
        "customer_id": "keys-test", "items": [{"sku": "mug-white", "quantity": 1}],
        "payment_token": "tok_ok"}, headers={"Idempotency-Key": str(uuid.uuid4()), **headers},
        timeout=10)  # a key given in ``headers`` wins over the fresh one


def test_no_key_is_refused_before_anything_is_written(api: str,
                                                      running_stack: StackSettings) -> None:
    refused = place(api, **{"Idempotency-Key": "refused-" + KEY})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    with psycopg.connect(running_stack.database_dsn(DATABASE)) as conn:
        claimed = conn.execute("SELECT count(*) FROM idempotency_keys WHERE key = %s",
                               ("refused-" + KEY,)).fetchone()
    assert claimed == (0,)  # not even its Idempotency-Key was claimed
    assert requests.get(f"{api}/health", timeout=5).status_code == 200  # probes stay open


def test_a_key_of_the_file_is_let_in(api: str) -> None:
    accepted = place(api, Authorization=f"Bearer {KEY}")
    assert accepted.status_code in (201, 202), accepted.text


def test_an_intake_reachable_from_elsewhere_without_keys_does_not_start(
        running_stack: StackSettings, tmp_path: Path) -> None:
    env = {**os.environ, **running_stack.service_env("orders", 0),
           "CHOREO_BIND_HOST": "0.0.0.0"}  # refused before anything is bound
    del env["CHOREO_METRICS_PORT"]
    result = subprocess.run([sys.executable, "-m", "choreo.services.orders", "api"], env=env,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert "CHOREO_BIND_HOST=0.0.0.0 lets other machines reach this intake" in result.stderr
