"""Provider failures, rollbacks and concurrent deliveries never move money twice.

A rollback is staged by running the handler inside an outer transaction that then
fails: the psp has acted, but the inbox row, the payment and the emitted events are
gone, exactly as after a crash before the commit. Only the charge attempt survives,
committed on a connection of its own before the call. The redelivery, or a
cancellation in between, re-sends the same request (same idempotency key), records
the psp's answer and refunds it if the order was cancelled. (A real SIGKILL mid-charge
is in test_payments_crash.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from choreo.outbox.consumer import claim_and_handle
from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.errors import PermanentError, TransientError
from choreo.services.payments.attempts import AttemptLog
from choreo.services.payments.domain import ProviderRejected, ProviderUnavailable
from choreo.services.payments.psp_client import PspClient
from tests.payments.conftest import PSP_SLOW_DELAY_S, PSP_TIMEOUT_S
from tests.payments.support import CONSUMER, Events, Harness, handlers_for, new_order_id
from tests.psp.support import CLIENT_TIMEOUT_S

pytestmark = pytest.mark.stack


class Crash(Exception):
    """Stands for the process dying after the handler ran, before the commit."""


def crash_after(harness: Harness, event: ReceivedEvent) -> None:
    with pytest.raises(Crash), harness.conn.transaction():
        assert harness.deliver(event) == "handled"
        raise Crash


def test_flaky_psp_is_transient_then_captures_once(harness: Harness, events: Events) -> None:
    """With answered failures not sent again in place (the harness's client)."""
    order_id = new_order_id()
    harness.deliver(events.placed(order_id, "tok_flaky"))
    reserved = events.reserved(order_id, 1250)

    with pytest.raises(TransientError) as failure:
        harness.deliver(reserved)
    assert isinstance(failure.value, ProviderUnavailable)
    assert "503" in str(failure.value)
    assert harness.status(order_id) == "awaiting"  # rolled back with the inbox row
    assert harness.charges(order_id) == []

    assert harness.deliver(reserved) == "handled"  # the runtime's retry
    assert harness.deliver(reserved) == "duplicate"

    [charge] = harness.charges(order_id)
    assert harness.emitted_types(order_id) == ["PaymentCaptured"]
    assert harness.emitted(order_id)[0].payload["payment_id"] == charge.id
    assert harness.status(order_id) == "captured"


def test_flaky_psp_sent_again_in_place_captures_in_the_first_delivery(
        harness: Harness, events: Events, payments_dsn: str, payments_psp_url: str) -> None:
    """As payments runs by default (``CHOREO_PSP_ANSWERED_RETRIES``): no rollback at all."""
    with PspClient(payments_psp_url, PSP_TIMEOUT_S, answered_retries=2) as psp, \
            AttemptLog(payments_dsn) as attempt_log:
        patient = Harness(harness.conn, handlers_for(psp, attempt_log), psp)
        order_id = new_order_id()
        patient.deliver(events.placed(order_id, "tok_flaky"))

        assert patient.deliver(events.reserved(order_id, 1250)) == "handled"

        [charge] = patient.charges(order_id)
        assert [e.payload for e in patient.emitted(order_id)] == [
            {"order_id": order_id, "payment_id": charge.id, "amount_cents": 1250}]
        assert patient.status(order_id) == "captured"


def test_redelivery_after_a_rollback_captures_once(harness: Harness, events: Events) -> None:
    order_id = new_order_id()
    harness.deliver(events.reserved(order_id, 990))
    placed = events.placed(order_id, "tok_ok")
    crash_after(harness, placed)
    [charge] = harness.charges(order_id)  # the psp captured; only the attempt knows of it
    assert harness.emitted(order_id) == []
    assert harness.status(order_id) == "awaiting"
    assert harness.attempt(order_id) == ("tok_ok", 990)

    assert harness.deliver(placed) == "handled"

    assert harness.charges(order_id) == [charge]
    assert [e.payload for e in harness.emitted(order_id)] == [
        {"order_id": order_id, "payment_id": charge.id, "amount_cents": 990}]
    assert harness.status(order_id) == "captured"


def test_refund_rolled_back_is_not_repeated(harness: Harness, events: Events) -> None:
    order_id = new_order_id()
    harness.deliver(events.placed(order_id, "tok_ok"))
    harness.deliver(events.reserved(order_id, 700))
    cancelled = events.cancelled(order_id)
    crash_after(harness, cancelled)

    assert harness.deliver(cancelled) == "handled"

    assert harness.psp.summary().refunds == 1
    assert harness.charges(order_id)[0].amount_refunded_cents == 700
    assert harness.emitted_types(order_id) == ["PaymentCaptured", "PaymentRefunded"]
    assert harness.status(order_id) == "refunded"


def test_cancellation_records_and_refunds_a_capture_lost_in_a_rollback(
        harness: Harness, events: Events) -> None:
    order_id = new_order_id()
    harness.deliver(events.placed(order_id, "tok_ok"))
    reserved = events.reserved(order_id, 1500)
    crash_after(harness, reserved)  # captured at the psp; the payment row rolled back

    assert harness.deliver(events.cancelled(order_id, "timeout")) == "handled"

    [charge] = harness.charges(order_id)
    assert charge.amount_refunded_cents == 1500
    captured = {"order_id": order_id, "payment_id": charge.id, "amount_cents": 1500}
    assert [(e.event_type, e.payload) for e in harness.emitted(order_id)] == [
        ("PaymentCaptured", captured), ("PaymentRefunded", captured)]
    assert harness.status(order_id) == "refunded"

    assert harness.deliver(reserved) == "handled"  # the redelivery of the rolled-back event
    assert harness.charges(order_id) == [charge]
    assert harness.emitted_types(order_id) == ["PaymentCaptured", "PaymentRefunded"]


@pytest.fixture
def impatient(harness: Harness, payments_dsn: str,
              payments_psp_url: str) -> Iterator[Harness]:
    """The same database with a psp client that gives up before tok_slow captures."""
    with PspClient(payments_psp_url, CLIENT_TIMEOUT_S) as psp, \
            AttemptLog(payments_dsn) as attempt_log:
        yield Harness(harness.conn, handlers_for(psp, attempt_log), psp)


def test_a_cancellation_waits_for_a_charge_in_flight_and_refunds_it(
        impatient: Harness, events: Events) -> None:
    """The psp captures after the caller timed out; the cancellation comes in between."""
    order_id = new_order_id()
    impatient.deliver(events.placed(order_id, "tok_slow"))
    reserved = events.reserved(order_id, 2000)
    with pytest.raises(ProviderUnavailable):
        impatient.deliver(reserved)
    assert impatient.attempt(order_id) == ("tok_slow", 2000)  # charging, durably

    cancelled = events.cancelled(order_id)
    with pytest.raises(ProviderUnavailable):  # 409 or a timeout: the capture is in flight
        impatient.deliver(cancelled)
    assert (impatient.status(order_id), impatient.emitted(order_id)) == ("awaiting", [])

    deadline = time.monotonic() + PSP_SLOW_DELAY_S + 10
    while True:  # the runtime's retries, until the psp's answer is final
        try:
            assert impatient.deliver(cancelled) == "handled"
            break
        except ProviderUnavailable:
            assert time.monotonic() < deadline, "tok_slow never answered"
            time.sleep(0.1)

    [charge] = impatient.charges(order_id)
    assert charge.amount_refunded_cents == 2000
    assert impatient.emitted_types(order_id) == ["PaymentCaptured", "PaymentRefunded"]
    assert impatient.status(order_id) == "refunded"
    assert impatient.deliver(reserved) == "handled"  # the redelivery changes nothing
    assert impatient.charges(order_id) == [charge]
    assert impatient.emitted_types(order_id) == ["PaymentCaptured", "PaymentRefunded"]


def test_a_decline_answered_to_a_cancelled_charging_payment_is_recorded(
        harness: Harness, events: Events) -> None:
    order_id = new_order_id()
    harness.deliver(events.placed(order_id, "tok_decline"))
    crash_after(harness, events.reserved(order_id, 300))  # declined; the answer rolled back

    assert harness.deliver(events.cancelled(order_id)) == "handled"

    assert harness.charges(order_id) == []
    assert [(e.event_type, e.payload) for e in harness.emitted(order_id)] == [
        ("PaymentDeclined", {"order_id": order_id, "reason": "card_declined"})]
    assert harness.status(order_id) == "declined"


def test_psp_error_stays_transient_and_captures_nothing(harness: Harness,
                                                       events: Events) -> None:
    order_id = new_order_id()
    harness.deliver(events.placed(order_id, "tok_error"))
    reserved = events.reserved(order_id, 100)

    for _ in range(3):
        with pytest.raises(ProviderUnavailable, match="500"):
            harness.deliver(reserved)

    assert harness.charges(order_id) == []
    assert harness.emitted(order_id) == []
    assert harness.status(order_id) == "awaiting"


def test_refused_request_is_permanent(harness: Harness, events: Events) -> None:
    order_id = new_order_id()
    harness.deliver(events.reserved(order_id, 100))

    with pytest.raises(PermanentError) as failure:
        harness.deliver(events.placed(order_id, "tok_unknown"))

    assert isinstance(failure.value, ProviderRejected)
    assert "token" in str(failure.value)
    assert harness.charges(order_id) == []


def test_concurrent_deliveries_of_one_order_serialise(harness: Harness, events: Events,
                                                      payments_dsn: str,
                                                      payments_psp_url: str) -> None:
    """Three consumers (two topics, two replicas) get one order's events at the same time."""
    orders = [new_order_id() for _ in range(8)]
    batches = [[events.placed(o, "tok_ok"), events.reserved(o, 300), events.cancelled(o)]
               for o in orders]
    start = threading.Barrier(3)

    def consume(position: int) -> None:
        with psycopg.connect(payments_dsn, autocommit=True) as conn, \
                PspClient(payments_psp_url, 5.0) as psp, AttemptLog(payments_dsn) as attempt_log:
            worker = Harness(conn, handlers_for(psp, attempt_log), psp)
            for batch in batches:
                start.wait(timeout=30)
                assert worker.deliver(batch[position]) == "handled"

    with ThreadPoolExecutor(3) as pool:
        for done in [pool.submit(consume, position) for position in range(3)]:
            done.result(timeout=60)

    for order_id in orders:
        charges = harness.charges(order_id)
        status = harness.status(order_id)
        if status == "cancelled":  # the cancellation came before the token or the total
            assert (charges, harness.emitted_types(order_id)) == ([], [])
        else:
            [charge] = charges
            assert (status, charge.amount_refunded_cents) == ("refunded", 300)
            assert harness.emitted_types(order_id) == ["PaymentCaptured", "PaymentRefunded"]


def test_an_order_cancelled_before_anything_arrived_needs_no_psp(harness: Harness,
                                                                 events: Events,
                                                                 payments_dsn: str) -> None:
    with PspClient("http://127.0.0.1:9", 0.5) as unreachable, \
            AttemptLog(payments_dsn) as attempt_log:
        offline = Harness(harness.conn, handlers_for(unreachable, attempt_log), unreachable)
        order_id = new_order_id()

        assert offline.deliver(events.cancelled(order_id)) == "handled"

    assert harness.status(order_id) == "cancelled"
    assert harness.deliver(events.placed(order_id, "tok_ok")) == "handled"
    assert harness.deliver(events.reserved(order_id, 100)) == "handled"
    assert (harness.charges(order_id), harness.emitted(order_id)) == ([], [])


def test_a_batched_run_charges_without_waiting_for_itself(harness: Harness,
                                                          events: Events) -> None:
    """The runtime commits runs of events in one transaction, so the payment's row lock
    may already be held by that transaction when the attempt commits apart from it."""
    order_id = new_order_id()
    run = [events.placed(order_id, "tok_ok"), events.reserved(order_id, 800),
           events.cancelled(order_id)]

    def batched() -> list[str]:
        with harness.conn.transaction():
            return [claim_and_handle(harness.conn, CONSUMER, harness.handlers[e.event_type], e)
                    for e in run]

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(batched).result(timeout=30) == ["handled"] * 3

    [charge] = harness.charges(order_id)
    assert charge.amount_refunded_cents == 800
    assert harness.emitted_types(order_id) == ["PaymentCaptured", "PaymentRefunded"]


def test_a_reservation_read_after_the_deadline_charges_nothing(harness: Harness,
                                                              events: Events) -> None:
    """Behind a backlog every StockReserved came after its order's deadline: each was
    captured, the orders service cancelled the order (timeout) and each was refunded,
    two psp calls per order just when payments had least time (storm at 15/s, issue 21)."""
    order_id = new_order_id()
    harness.deliver(events.placed(order_id, "tok_ok", deadline_at="2020-01-01T00:00:00Z"))
    assert harness.deliver(events.reserved(order_id, 1250)) == "handled"
    assert harness.charges(order_id) == []
    assert harness.attempt(order_id) is None
    assert harness.emitted_types(order_id) == []
    payment = harness.payment(order_id)
    assert payment is not None
    assert (payment["status"], payment["cancel_reason"]) == ("cancelled", "deadline passed")

    assert harness.deliver(events.cancelled(order_id, "timeout")) == "handled"
    assert harness.emitted_types(order_id) == []
    assert harness.charges(order_id) == []
