"""What operators and audits rely on: ledger totals, health, metrics, graceful SIGTERM."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid

import psycopg
import pytest
import requests

from choreo.services.payments.psp_client import LedgerSummary, PaymentDeclined, PspClient
from choreo.stack.components import free_port
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings
from tests.psp.support import Api, Ledger, psp_env, retry_until_answered, start_psp

pytestmark = pytest.mark.stack

CHARGE = {"amount_cents": 700, "currency": "EUR", "token": "tok_ok", "reference": "order-log"}


def test_summary_totals_count_captures_and_refunds_only(api: Api, client: PspClient) -> None:
    assert client.summary() == LedgerSummary(0, 0, 0, 0)
    first = client.charge("key-1", 1000, "EUR", "tok_ok", "order-1")
    client.charge("key-2", 2500, "EUR", "tok_ok", "order-2")
    client.charge("key-2", 2500, "EUR", "tok_ok", "order-2")  # a replay adds nothing
    with pytest.raises(PaymentDeclined):
        client.charge("key-3", 9999, "EUR", "tok_decline", "order-3")
    client.refund("key-4", first.id, 400)

    summary = client.summary()

    assert summary == LedgerSummary(captured_cents=3500, refunded_cents=400, charges=2,
                                    refunds=1)
    assert summary.net_cents == 3100
    assert api.get("/v1/ledger/summary").json() == {
        "captured_cents": 3500, "refunded_cents": 400, "charges": 2, "refunds": 1}


def test_health_is_json(api: Api) -> None:
    response = api.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_metrics_count_outcomes(api: Api) -> None:
    def sample(text: str, name: str) -> float:
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith(name + " ") or line.startswith(name + "{")]
        return sum(values)

    before = api.get("/metrics").text
    charge_id = api.charge("key-m1").json()["id"]
    api.charge("key-m1")
    api.charge("key-m2", token="tok_insufficient")
    api.post("/v1/refunds", {"charge_id": charge_id}, "key-m3")
    response = api.get("/metrics")
    after = response.text

    assert response.headers["Content-Type"].startswith("text/plain")
    for name, delta in [("psp_charges_captured_total", 1),
                        ("psp_idempotent_replays_total", 1),
                        ('psp_charges_declined_total{code="insufficient_funds"}', 1),
                        ("psp_refunds_total", 1),
                        ("psp_refunds_cents_total", 1250)]:
        assert sample(after, name) - sample(before, name) == delta, name
    assert 'psp_request_duration_seconds_count{method="POST",route="/v1/charges"' in after


def test_each_request_logs_one_json_line_with_trace_and_order(
    api: Api, psp_registry: ProcessRegistry
) -> None:
    trace = uuid.uuid4().hex
    key = f"key-logged-{trace}"  # unique: the log file outlives test runs
    requests.post(f"{api.base_url}/v1/charges", json=CHARGE, timeout=10, headers={
        "Idempotency-Key": key, "traceparent": f"00-{trace}-00f067aa0ba902b7-01"})

    def logged_lines() -> list[dict]:
        text = psp_registry.log_file("psp-test").read_text()
        return [line for line in map(json.loads, filter(lambda raw: raw.startswith("{"),
                                                         text.splitlines()))
                if line.get("idempotency_key") == key]

    # The line is written as the response goes out: give a loaded machine a moment.
    deadline = time.monotonic() + 10
    while not logged_lines() and time.monotonic() < deadline:
        time.sleep(0.05)
    [logged] = logged_lines()
    assert logged["trace_id"] == trace
    assert logged["order_id"] == CHARGE["reference"]
    assert logged["charge_id"].startswith("ch_")
    assert (logged["status"], logged["idempotency"]) == (201, "executed")


def test_sigterm_lets_a_capture_in_flight_commit(running_stack: StackSettings,
                                                  psp_registry: ProcessRegistry,
                                                  ledger: Ledger) -> None:
    ledger.truncate()
    name = "psp-sigterm-test"
    base_url = start_psp(psp_registry, name, psp_env(running_stack, free_port()))
    outcome: list[requests.Response] = []
    request = threading.Thread(target=lambda: outcome.append(
        Api(base_url).charge("key-sigterm", token="tok_slow", timeout_s=30)))
    try:
        request.start()
        wait_for_open_transaction(ledger.dsn)
        assert psp_registry.stop(name)
    finally:
        psp_registry.stop(name)
        request.join()

    assert outcome[0].status_code == 201
    assert ledger.count("charges") == 1
    assert '"msg": "psp stopped"' in psp_registry.log_file(name).read_text()


def test_a_crash_mid_capture_leaves_no_capture_and_no_stuck_key(
    running_stack: StackSettings, psp_registry: ProcessRegistry, ledger: Ledger
) -> None:
    ledger.truncate()
    name = "psp-crash-test"
    env = psp_env(running_stack, free_port())
    base_url = start_psp(psp_registry, name, env)
    request = threading.Thread(target=lambda: _ignore_connection_loss(
        Api(base_url), "key-crash"))
    try:
        request.start()
        wait_for_open_transaction(ledger.dsn)
        psp_registry.kill(name)
        request.join()
        assert ledger.count("charges") == 0

        start_psp(psp_registry, name, env)
        with PspClient(base_url, timeout_s=5.0) as psp:
            # Until PostgreSQL notices the dead connection the key may still answer 409.
            charge = retry_until_answered(psp, "key-crash", "tok_slow", "order-1")
    finally:
        psp_registry.stop(name)

    assert charge.status == "captured"
    assert ledger.count("charges") == 1


def _ignore_connection_loss(api: Api, key: str) -> None:
    with contextlib.suppress(requests.ConnectionError):
        api.charge(key, token="tok_slow", timeout_s=30)


def wait_for_open_transaction(dsn: str, timeout_s: float = 10.0) -> None:
    """Until a psp connection sits inside a transaction: the slow charge holds its key."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity"
                               " WHERE datname = current_database()"
                               " AND state = 'idle in transaction'").fetchone()
            if row is not None and row[0] > 0:
                return
            time.sleep(0.02)
    pytest.fail("the slow charge never started")
