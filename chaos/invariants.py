"""The guarantees listed in docs/chaos.md, each as a check over what a chaos run saw.

Pure functions of the evidence, so each check can be tested on hand-made evidence and
the run stays a matter of collecting it. A check lists every offender it finds (up to
a few, with the order or SKU named), because "FAIL" alone sends someone digging.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from choreo.chaos.faults import FaultRecord
from choreo.chaos.load import Placed
from choreo.services.notification.handlers import KIND_OF
from choreo.services.payments.psp_client import Charge
from choreo.testkit.observer import OrderState, Snapshot, Wallet
from choreo.testkit.orders_client import saga_settled

SHOWN_FAILURES = 8


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evidence:
    placed: list[Placed]
    final: Snapshot
    """Taken once the run was quiescent (or the bound ran out), with the psp's charges."""
    initial_stock: dict[str, int]
    unbalanced_samples: list[str]
    negative_samples: list[str]
    samples: int
    quiescence_s: float | None
    """From the last killed process being healthy again to quiescence; None past the bound."""
    bound_s: float
    faults: list[FaultRecord]
    topped_up_cents: int = 0
    """What the run put into its customer's wallet; 0: not known (nothing compared)."""


def _check(name: str, failures: list[str], detail: str) -> Check:
    return Check(name, not failures, detail, tuple(failures[:SHOWN_FAILURES]))


def confirmed_units(evidence: Evidence) -> Counter[str]:
    units: Counter[str] = Counter()
    for order in evidence.final.orders:
        if order.status == "CONFIRMED":
            for line in order.items:
                units[line["sku"]] += line["quantity"]
    return units


def edge_exactly_once(evidence: Evidence) -> Check:
    """Every request accepted, and the database holds one order per Idempotency-Key."""
    failures = [f"request {p.key}: no 202 after {p.placement.count} attempts"
                f" (last status {p.placement.status})"
                for p in evidence.placed if p.order_id is None]
    answered = {p.key: p.order_id for p in evidence.placed if p.order_id}
    stored = Counter(order.key for order in evidence.final.orders)
    failures += [f"key {key}: {count} orders" for key, count in stored.items() if count > 1]
    by_key = {order.key: order.id for order in evidence.final.orders}
    failures += [f"key {key}: answered {order_id}, stored {by_key.get(key)}"
                 for key, order_id in answered.items() if by_key.get(key) != order_id]
    failures += [f"order {order.id} ({order.key}) was never requested"
                 for order in evidence.final.orders if order.key not in answered]
    retried = sum(p.placement.count > 1 for p in evidence.placed)
    replayed = sum(p.replayed for p in evidence.placed)
    server_errors = sum(p.placement.server_errors for p in evidence.placed)
    return _check("edge: one order per request", failures,
                  f"{len(evidence.placed)} requests, {len(evidence.final.orders)} orders;"
                  f" {retried} retried through an outage, {replayed} answered as replays,"
                  f" {server_errors} 5xx answers")


def termination(evidence: Evidence) -> Check:
    final = evidence.final
    failures = [f"order {o.id}: {o.status} after {' > '.join(o.event_types)}"
                for o in final.orders if not saga_settled(o.as_api())]
    failures += [f"reservation {order_id} still held" for order_id in final.open_reservations]
    took = evidence.quiescence_s
    if took is None:
        failures.insert(0, f"not quiescent within {evidence.bound_s:.0f}s")
    detail = (f"quiescent {took:.1f}s after the last fault (bound {evidence.bound_s:.0f}s)"
              if took is not None else f"bound {evidence.bound_s:.0f}s exceeded")
    return _check("termination: every saga settled within the bound", failures, detail)


def stock_conserved(evidence: Evidence) -> Check:
    failures = [f"{sku}: {counts} sums to {counts.total}, initial {evidence.initial_stock[sku]}"
                for sku, counts in evidence.final.stock.items()
                if counts.total != evidence.initial_stock[sku]]
    failures += [f"during the run: {seen}" for seen in evidence.unbalanced_samples]
    return _check("stock conserved per SKU", failures,
                  f"available + reserved + sold = initial for {len(evidence.initial_stock)}"
                  f" SKUs at quiescence and in {evidence.samples} samples during the run")


def nothing_negative(evidence: Evidence) -> Check:
    failures = [f"{sku}: {counts}" for sku, counts in evidence.final.stock.items()
                if min(counts.available, counts.reserved, counts.sold) < 0]
    failures += [f"during the run: {seen}" for seen in evidence.negative_samples]
    return _check("nothing negative", failures,
                  f"no counter below zero at quiescence nor in {evidence.samples} samples")


def nothing_reserved(evidence: Evidence) -> Check:
    failures = [f"{sku}: {counts.reserved} units still reserved"
                for sku, counts in evidence.final.stock.items() if counts.reserved]
    failures += [f"reservation of order {order_id} still 'reserved'"
                 for order_id in evidence.final.open_reservations]
    return _check("reserved = 0 at quiescence", failures,
                  "every reservation sold or released")


def sold_matches_confirmed(evidence: Evidence) -> Check:
    units = confirmed_units(evidence)
    failures = [f"{sku}: sold {counts.sold}, confirmed orders hold {units[sku]}"
                for sku, counts in evidence.final.stock.items() if counts.sold != units[sku]]
    return _check("sold = quantities of confirmed orders", failures,
                  f"{sum(units.values())} units sold across {len(units)} SKUs")


def _charges(evidence: Evidence) -> dict[str, list[Charge]]:
    if evidence.final.charges is None:
        raise ValueError("the final snapshot must carry the psp's charges")
    return evidence.final.charges


def one_capture_per_order(evidence: Evidence) -> Check:
    charges = _charges(evidence)
    failures = [f"order {order_id}: {len(found)} captures ({', '.join(c.id for c in found)})"
                for order_id, found in charges.items() if len(found) > 1]
    captured = sum(bool(found) for found in charges.values())
    return _check("psp never captured twice for one order", failures,
                  f"{captured} orders captured once")


def paid_by_card(order: OrderState) -> int:
    """What the psp should hold net for an order: a confirmed card order's total."""
    confirmed = order.status == "CONFIRMED" and order.payment_method == "card"
    return (order.total_cents or 0) if confirmed else 0


def money_per_order(evidence: Evidence) -> Check:
    """Confirmed by card: net = the order's total. Anything else (a wallet order too):
    every capture refunded in full."""
    charges = _charges(evidence)
    failures = []
    refunded_orders = 0
    for order in evidence.final.orders:
        found = charges.get(order.id, [])
        captured = sum(c.amount_cents for c in found)
        refunded = sum(c.amount_refunded_cents for c in found)
        expected = paid_by_card(order)
        refunded_orders += bool(refunded)
        if captured - refunded != expected:
            failures.append(f"order {order.id} {order.status} ({order.reason}): captured"
                            f" {captured}, refunded {refunded}, expected net {expected}")
    return _check("every capture of an unconfirmed order refunded", failures,
                  f"{refunded_orders} orders refunded")


def money_balances(evidence: Evidence) -> Check:
    charges = _charges(evidence)
    net = sum(c.amount_cents - c.amount_refunded_cents for found in charges.values()
              for c in found)
    confirmed = sum(map(paid_by_card, evidence.final.orders))
    failures = [] if net == confirmed else [f"psp net {net} cents, confirmed total {confirmed}"]
    return _check("captured - refunded = total of confirmed card orders", failures,
                  f"{net} cents net at the psp, {confirmed} cents confirmed")


def _wallet(evidence: Evidence) -> Wallet:
    if evidence.final.wallet is None or evidence.final.messages is None:
        raise ValueError("the final snapshot must carry the wallet and the notifier's ledger")
    return evidence.final.wallet


def wallet_money_conserved(evidence: Evidence) -> Check:
    wallet = _wallet(evidence)
    topped_up, debited, refunded = (wallet.total(kind) for kind in ("topup", "debit", "refund"))
    failures = [] if topped_up - debited + refunded == wallet.balance_cents else [
        f"top-ups {topped_up} - debits {debited} + refunds {refunded}"
        f" != balance {wallet.balance_cents}"]
    if evidence.topped_up_cents and topped_up != evidence.topped_up_cents:
        failures.append(f"the ledger's top-ups are {topped_up}, the run topped up"
                        f" {evidence.topped_up_cents}")
    return _check("wallet money conserved", failures,
                  f"top-ups {topped_up} - debits {debited} + refunds {refunded}"
                  f" = balance {wallet.balance_cents} cents")


def wallet_once_per_order(evidence: Evidence) -> Check:
    """At most one debit and one refund per order; a confirmed wallet order keeps its
    debit, any other wallet order was refunded or never debited."""
    wallet = _wallet(evidence)
    failures = []
    debited_orders = 0
    for order in evidence.final.orders:
        debits, refunds = wallet.of(order.id, "debit"), wallet.of(order.id, "refund")
        debited_orders += bool(debits)
        if len(debits) > 1 or len(refunds) > 1:
            failures.append(f"order {order.id}: {len(debits)} debits, {len(refunds)} refunds")
        confirmed = order.status == "CONFIRMED" and order.payment_method == "wallet"
        expected = (order.total_cents or 0) if confirmed else 0
        if sum(debits) - sum(refunds) != expected:
            failures.append(f"order {order.id} {order.status} by {order.payment_method}:"
                            f" debited {sum(debits)}, refunded {sum(refunds)}, expected"
                            f" net {expected}")
    return _check("no wallet order debited twice, every cancelled one refunded", failures,
                  f"{debited_orders} orders debited")


def points_match(evidence: Evidence) -> Check:
    wallet = _wallet(evidence)
    expected = sum((order.total_cents or 0) // 100 for order in evidence.final.orders
                   if order.status == "CONFIRMED")
    failures = [] if wallet.points == expected else [
        f"{wallet.points} points, confirmed orders earn {expected}"]
    return _check("points = those of the confirmed orders", failures,
                  f"{wallet.points} points for {expected} earned")


def notified_once(evidence: Evidence) -> Check:
    """Counted on the provider's side: every message owed sent once, none twice, and none
    whose event the order never saw. The seeds allow 0.1 % duplicates; the figure is
    printed either way. The notifier honours Idempotency-Keys, so a duplicate here means
    notification sent one order and kind under two keys; the re-sends it made under one
    key are printed beside, as what a provider without keys would have duplicated."""
    _wallet(evidence)
    sent = evidence.final.messages or {}
    failures: list[str] = []
    owed = duplicates = missing = unowed = 0
    for order in evidence.final.orders:
        expected = {KIND_OF[e] for e in order.event_types if e in KIND_OF}
        got = sent.get(order.id, Counter())
        owed += len(expected)
        for kind in sorted(expected | set(got)):
            count = got[kind]
            if kind not in expected:
                unowed += 1
                failures.append(f"order {order.id}: told {kind}, which its history lacks")
            elif count == 0:
                missing += 1
                failures.append(f"order {order.id}: never told {kind}")
            elif count > 1:
                duplicates += count - 1
                failures.append(f"order {order.id}: told {kind} {count} times")
    share = f"{100 * duplicates / owed:.2f} %" if owed else "-"
    return _check("every customer told once per order and kind", failures,
                  f"{owed} messages owed: {duplicates} duplicates ({share}), {missing} missing,"
                  f" {unowed} not owed; {evidence.final.resends} re-sends answered by the"
                  " provider's key (a provider without keys would have sent them twice)")


def effectively_once(evidence: Evidence) -> Check:
    failures = []
    for order in evidence.final.orders:
        repeated = [event for event, count in Counter(order.event_ids).items() if count > 1]
        if repeated:
            failures.append(f"order {order.id}: events {repeated} applied twice")
        if order.event_types.count("OrderPlaced") != 1:
            failures.append(f"order {order.id}: {order.event_types.count('OrderPlaced')}"
                            " OrderPlaced")
    events = sum(len(order.event_ids) for order in evidence.final.orders)
    return _check("effectively once: no event applied twice", failures,
                  f"{events} events in order histories, each once")


def no_dead_letters(evidence: Evidence) -> Check:
    """An event retried on its key's schedule (``retried``) and what waited behind it
    (``replayed``: nobody replays dead letters during a run) settled by themselves; any
    other entry is a dead letter, or a key still blocked at the end."""
    failures = [f"{d.service}/{d.consumer} {d.status} {d.event_type} for {d.key}: {d.reason}"
                for d in evidence.final.dead_letters if d.status not in ("retried", "replayed")]
    retried = sum(d.status == "retried" for d in evidence.final.dead_letters)
    return _check("no dead letters", failures,
                  "a crash is not a poison event: nothing of this run was dead-lettered"
                  f" ({retried} events retried on their key's schedule)")


def processes_recovered(evidence: Evidence) -> Check:
    failures = [f"{r.fault.target} killed at t={r.killed_at_s:.1f}s: {r.restart_error}"
                for r in evidence.faults if r.restart_error]
    failures += [f"{r.fault.target} was not running when its fault was due"
                 for r in evidence.faults if r.pid is None]
    failures += [f"{name} died on its own (found dead {r.fault.down_s:.1f}s after"
                 f" {r.fault.target} was killed)" for r in evidence.faults for name in r.collateral]
    return _check("every killed process restarted, nothing else died", failures,
                  f"{len(evidence.faults)} SIGKILLs, each followed by a healthy restart")


CHECKS: tuple[Callable[[Evidence], Check], ...] = (
    processes_recovered, edge_exactly_once, termination, stock_conserved, nothing_negative,
    nothing_reserved, sold_matches_confirmed, one_capture_per_order, money_per_order,
    money_balances, wallet_money_conserved, wallet_once_per_order, points_match,
    notified_once, effectively_once, no_dead_letters,
)


def check_all(evidence: Evidence) -> list[Check]:
    return [check(evidence) for check in CHECKS]
