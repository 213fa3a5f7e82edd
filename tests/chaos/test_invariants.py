"""Each invariant passes on a consistent run and names the offender when it does not."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime

from choreo.chaos.faults import FaultRecord
from choreo.chaos.invariants import Evidence, check_all
from choreo.chaos.load import Placed
from choreo.chaos.plan import Fault, OrderRequest
from choreo.chaos.report import ChaosReport
from choreo.services.payments.psp_client import Charge
from choreo.testkit.observer import OrderState, Snapshot, Stock, Wallet
from choreo.testkit.orders_client import Attempts

SETTLED = {
    "CONFIRMED": ("OrderPlaced", "StockReserved", "PaymentCaptured", "OrderConfirmed"),
    "CANCELLED": ("OrderPlaced", "StockReserved", "PaymentCaptured", "OrderConfirmed",
                  "OrderCancelled", "PaymentRefunded", "StockReleased"),
    "REJECTED": ("OrderPlaced", "StockReservationFailed", "OrderRejected"),
}


def order(number: int, status: str, quantity: int, reason: str | None = None) -> OrderState:
    events = SETTLED[status]
    return OrderState(f"o{number}", f"run-{number}", status, reason,
                      [{"sku": "mug", "quantity": quantity}], 1000 * quantity, events,
                      tuple(f"o{number}-e{i}" for i in range(len(events))))


def placed(state: OrderState) -> Placed:
    answer = Attempts(count=1, status=202, body={"id": state.id, "replayed": False})
    return Placed(OrderRequest(0, ((0, 1),), "tok_ok", None), state.key, answer)


def charge(order_id: str, amount: int, refunded: int = 0) -> Charge:
    return Charge(f"ch_{order_id}", "captured", amount, "EUR", order_id, refunded)


WALLET_ORDER = dataclasses.replace(
    order(4, "CONFIRMED", 1), payment_method="wallet",
    event_types=("OrderPlaced", "StockReserved", "WalletDebited", "OrderConfirmed"))
MESSAGES = {"o1": Counter(confirmed=1), "o2": Counter(confirmed=1, cancelled=1, refunded=1),
            "o3": Counter(rejected=1), "o4": Counter(confirmed=1)}


def consistent() -> Evidence:
    """Confirmed, cancelled after a capture, rejected by card; confirmed by wallet."""
    orders = [order(1, "CONFIRMED", 2), order(2, "CANCELLED", 1, "customer"),
              order(3, "REJECTED", 9, "out of stock"), WALLET_ORDER]
    wallet = Wallet(4000, 30, [("topup", None, 5000), ("debit", "o4", 1000)])
    final = Snapshot(orders, {"mug": Stock(available=7, reserved=0, sold=3)}, [],
                     {"o1": "captured", "o2": "refunded"}, [],
                     {"o1": [charge("o1", 2000)], "o2": [charge("o2", 1000, 1000)], "o3": [],
                      "o4": []}, wallet, MESSAGES)
    return Evidence([placed(o) for o in orders], final, {"mug": 10}, [], [], 20, 12.5, 60.0, [])


def with_final(evidence: Evidence, **changes: object) -> Evidence:
    return dataclasses.replace(evidence, final=dataclasses.replace(evidence.final, **changes))


def test_a_second_debit_and_a_lost_refund_are_caught_per_order_and_in_the_money() -> None:
    twice = Wallet(3000, 30, [("topup", None, 5000), ("debit", "o4", 1000),
                              ("debit", "o4", 1000)])
    problems = failed(with_final(consistent(), wallet=twice))
    assert set(problems) == {"no wallet order debited twice, every cancelled one refunded"}
    assert problems["no wallet order debited twice, every cancelled one refunded"][0] == \
        "order o4: 2 debits, 0 refunds"

    cancelled = dataclasses.replace(WALLET_ORDER, status="CANCELLED")
    evidence = consistent()
    orders = [*evidence.final.orders[:3], cancelled]
    problems = failed(with_final(evidence, orders=orders, wallet=Wallet(
        4000, 20, [("topup", None, 5000), ("debit", "o4", 1000)])))
    assert "order o4 CANCELLED by wallet: debited 1000, refunded 0, expected net 0" in \
        problems["no wallet order debited twice, every cancelled one refunded"]


def test_a_top_up_applied_twice_is_caught_against_what_the_run_put_in() -> None:
    twice = Wallet(9000, 30, [("topup", None, 5000), ("topup", None, 5000),
                              ("debit", "o4", 1000)])
    evidence = dataclasses.replace(with_final(consistent(), wallet=twice), topped_up_cents=5000)
    assert failed(evidence) == {"wallet money conserved": (
        "the ledger's top-ups are 10000, the run topped up 5000",)}


def test_money_that_appeared_in_a_wallet_and_points_of_a_cancelled_order_are_caught() -> None:
    problems = failed(with_final(consistent(), wallet=Wallet(
        4100, 31, [("topup", None, 5000), ("debit", "o4", 1000)])))
    assert problems == {
        "wallet money conserved": ("top-ups 5000 - debits 1000 + refunds 0 != balance 4100",),
        "points = those of the confirmed orders": ("31 points, confirmed orders earn 30",)}


def test_a_message_told_twice_or_never_is_counted_on_the_providers_side() -> None:
    messages = {**MESSAGES, "o1": Counter(confirmed=2), "o3": Counter(),
                "o4": Counter(confirmed=1, refunded=1)}
    check = next(c for c in check_all(with_final(consistent(), messages=messages))
                 if c.name == "every customer told once per order and kind")
    assert not check.passed
    assert check.failures == ("order o1: told confirmed 2 times", "order o3: never told rejected",
                              "order o4: told refunded, which its history lacks")
    assert check.detail.startswith("6 messages owed: 1 duplicates (16.67 %), 1 missing,"
                                   " 1 not owed; 0 re-sends")


def failed(evidence: Evidence) -> dict[str, tuple[str, ...]]:
    return {check.name: check.failures for check in check_all(evidence) if not check.passed}


def test_a_consistent_run_passes_every_check() -> None:
    assert failed(consistent()) == {}


def test_a_second_capture_is_caught_per_order_and_in_the_balance() -> None:
    evidence = consistent()
    charges = {**evidence.final.charges, "o1": [charge("o1", 2000), charge("o1", 2000)]}
    evidence = dataclasses.replace(evidence,
                                   final=dataclasses.replace(evidence.final, charges=charges))
    problems = failed(evidence)
    assert set(problems) == {"psp never captured twice for one order",
                             "every capture of an unconfirmed order refunded",
                             "captured - refunded = total of confirmed card orders"}
    assert "order o1: 2 captures" in problems["psp never captured twice for one order"][0]


def test_a_unit_lost_between_counters_is_caught_at_quiescence_and_during_the_run() -> None:
    evidence = consistent()
    final = dataclasses.replace(evidence.final, stock={"mug": Stock(6, 0, 3)})
    evidence = dataclasses.replace(evidence, final=final,
                                   unbalanced_samples=["t=3.0s mug: ... (initial 10)"])
    problems = failed(evidence)
    assert list(problems) == ["stock conserved per SKU"]
    assert problems["stock conserved per SKU"][0] == "mug: Stock(available=6, reserved=0," \
        " sold=3) sums to 9, initial 10"
    assert problems["stock conserved per SKU"][1].startswith("during the run: t=3.0s")


def test_an_order_stored_twice_for_one_key_or_never_accepted_fails_the_edge() -> None:
    evidence = consistent()
    twin = dataclasses.replace(evidence.final.orders[2], id="o4", total_cents=0)
    refused = dataclasses.replace(evidence.placed[0], placement=Attempts(40, 0, None, None))
    evidence = dataclasses.replace(
        evidence, placed=[refused, *evidence.placed[1:]],
        final=dataclasses.replace(evidence.final, orders=[*evidence.final.orders, twin]))
    problems = failed(evidence)["edge: one order per request"]
    assert "request run-1: no 202 after 40 attempts (last status None)" in problems
    assert "key run-3: 2 orders" in problems


def test_a_saga_left_hanging_fails_termination_and_names_the_order() -> None:
    evidence = consistent()
    pending = dataclasses.replace(evidence.final.orders[0], status="PENDING",
                                  event_types=("OrderPlaced", "StockReserved"))
    evidence = dataclasses.replace(
        evidence, quiescence_s=None,
        final=dataclasses.replace(evidence.final, orders=[pending, *evidence.final.orders[1:]],
                                  open_reservations=["o1"]))
    problems = failed(evidence)["termination: every saga settled within the bound"]
    assert problems == ("not quiescent within 60s",
                        "order o1: PENDING after OrderPlaced > StockReserved",
                        "reservation o1 still held")


def test_a_process_that_died_without_being_killed_is_reported() -> None:
    record = FaultRecord(Fault(5.0, "connect", 1.0), datetime.now(UTC), 5.0, 4242,
                         collateral=["orders-worker"], restarted_at_s=12.0)
    problems = failed(dataclasses.replace(consistent(), faults=[record]))
    assert problems == {"every killed process restarted, nothing else died": (
        "orders-worker died on its own (found dead 1.0s after connect was killed)",)}


def test_the_report_shows_each_fault_and_each_verdict() -> None:
    evidence = consistent()
    record = FaultRecord(Fault(5.0, "payments", 1.0), datetime(2026, 1, 2, 3, 4, 5, 678000),
                         5.0, 4242, restarted_at_s=9.5, consuming_at_s=14.0)
    report = ChaosReport(7, "chaos-test", 40, 44.2, 20, 30, {"mug": 10}, [record],
                         evidence.placed, evidence.final.orders, 12.5, 60.0,
                         check_all(evidence))
    lines = report.lines()
    assert ("   1  03:04:05.678       5.0s  payments          4242    1.0s      4.5s       9.0s"
            "         -") in lines  # no stall watched: only broker faults measure one
    assert "  CANCELLED customer               1" in lines
    assert lines[-1] == "result: PASS (16/16 invariants hold)"
