"""A payments process dies while its charge is in flight at the psp (issue 8, path 7).

P1 sends a slow charge and is SIGKILLed: PostgreSQL aborts its transaction, the psp
keeps running the request and captures a moment later. P2 meanwhile gets the
OrderCancelled and the redelivered StockReserved. The psp lists only committed
charges, so P2 cannot see the capture coming; what it must know is that a charge may
be in flight, from state committed before P1 called the psp. The money guarantee is
checked at the psp itself: one capture, refunded in full.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest

from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.errors import TransientError
from choreo.services.payments.domain import charge_key
from choreo.stack.settings import REPO_ROOT
from tests.payments.charging_worker import event_to_json
from tests.payments.conftest import PSP_SLOW_DELAY_S
from tests.payments.support import Events, Harness, new_order_id
from tests.psp.support import Ledger

pytestmark = pytest.mark.stack

TOTAL_CENTS = 2000


def in_flight(ledger: Ledger, key: str) -> bool:
    """The psp holds the key's advisory lock while it runs the request (idempotency.py)."""
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
            " AND objsubid = 1 AND database = (SELECT oid FROM pg_database"
            "  WHERE datname = current_database())"
            " AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, 0))",
            (key,)).fetchone()
    return bool(row and row[0])


def wait_for(condition: str, check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{condition} not within {timeout_s}s"
        time.sleep(0.02)


def deliver_as_the_runtime_does(harness: Harness, event: ReceivedEvent,
                                within_s: float) -> str:
    """Retry transient failures (the psp's 409 while a key is in flight) until handled."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return harness.deliver(event)
        except TransientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def dying_payments() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; killed and reaped whatever happens to the test."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in started:
            process.kill()
            process.communicate(timeout=10)  # reaps it and closes its pipes


def test_a_charge_in_flight_when_its_process_dies_is_refunded_after_a_cancel(
        harness: Harness, events: Events, payments_dsn: str, payments_psp_url: str,
        psp_ledger: Ledger, dying_payments: list[subprocess.Popen[str]]) -> None:
    order_id = new_order_id()
    assert harness.deliver(events.placed(order_id, "tok_slow")) == "handled"
    reserved = events.reserved(order_id, TOTAL_CENTS)

    p1 = subprocess.Popen(
        [sys.executable, "-m", "tests.payments.charging_worker", payments_dsn,
         payments_psp_url, event_to_json(reserved)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dying_payments.append(p1)
    def p1_charging() -> bool:
        if p1.poll() is not None:
            pytest.fail(f"P1 exited before its charge was in flight: {p1.communicate()}")
        return in_flight(psp_ledger, charge_key(order_id))

    wait_for("P1's charge in flight at the psp", p1_charging, timeout_s=30)
    p1.kill()
    p1.wait(timeout=10)
    assert harness.charges(order_id) == []  # not captured yet: the psp is still at it

    # P2: the cancellation, then the redelivery of the event P1 never committed.
    settle_s = PSP_SLOW_DELAY_S + 15
    assert deliver_as_the_runtime_does(harness, events.cancelled(order_id), settle_s) \
        == "handled"
    assert deliver_as_the_runtime_does(harness, reserved, settle_s) == "handled"
    wait_for("the capture at the psp", lambda: harness.charges(order_id), settle_s)

    [charge] = harness.charges(order_id)  # never captured twice
    assert charge.amount_refunded_cents == TOTAL_CENTS
    captured = {"order_id": order_id, "payment_id": charge.id, "amount_cents": TOTAL_CENTS}
    assert [(e.event_type, e.payload) for e in harness.emitted(order_id)] == [
        ("PaymentCaptured", captured), ("PaymentRefunded", captured)]
    assert harness.status(order_id) == "refunded"
