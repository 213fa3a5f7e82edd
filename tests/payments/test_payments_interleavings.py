"""Every arrival order of an order's events ends in the right payment, money and events.

OrderPlaced and OrderCancelled come from order.events, StockReserved from
inventory.events: nothing orders the two topics, so any permutation can reach
payments, each event possibly twice (redelivered with its id, or re-emitted with a new
one). The expectation is stated without replaying the service's logic: the order is
charged iff it was not cancelled before both the token and the total had arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo.outbox.delivery import ReceivedEvent
from tests.payments.support import Events, Harness, new_order_id

pytestmark = pytest.mark.stack

PLACED, RESERVED, CANCELLED = "OrderPlaced", "StockReserved", "OrderCancelled"
TOTAL_CENTS = 4250


@dataclass(frozen=True)
class Delivery:
    kind: str
    copy: str
    """first, redelivered (the same event id again) or re-emitted (a new id, same content)."""


@dataclass(frozen=True)
class Scenario:
    token: str
    deliveries: tuple[Delivery, ...]

    @property
    def cancelled(self) -> bool:
        return any(d.kind == CANCELLED for d in self.deliveries)

    def first(self, kind: str) -> int:
        return next(i for i, d in enumerate(self.deliveries) if d.kind == kind)

    @property
    def charged(self) -> bool:
        """Charging needs the token and the total; a cancellation before both forbids it."""
        return not self.cancelled or max(self.first(PLACED), self.first(RESERVED)) \
            < self.first(CANCELLED)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    kinds = [PLACED, RESERVED] + ([CANCELLED] if draw(st.booleans()) else [])
    again = {kind: draw(st.sampled_from([None, "redelivered", "re-emitted"])) for kind in kinds}
    order = draw(st.permutations(kinds + [kind for kind in kinds if again[kind]]))
    deliveries = [Delivery(kind, "first" if kind not in order[:i] else str(again[kind]))
                  for i, kind in enumerate(order)]
    return Scenario(draw(st.sampled_from(["tok_ok", "tok_decline"])), tuple(deliveries))


def build(events: Events, order_id: str, kind: str, token: str) -> ReceivedEvent:
    if kind == PLACED:
        return events.placed(order_id, token)
    if kind == RESERVED:
        return events.reserved(order_id, TOTAL_CENTS)
    return events.cancelled(order_id, "customer")


@settings(max_examples=60, deadline=None,
          # One database and psp for all examples; each example has its own order id.
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_any_interleaving_ends_right(harness: Harness, events: Events,
                                     scenario: Scenario) -> None:
    order_id = new_order_id()
    last: dict[str, ReceivedEvent] = {}
    for delivery in scenario.deliveries:
        event = last[delivery.kind] if delivery.copy == "redelivered" \
            else build(events, order_id, delivery.kind, scenario.token)
        outcome = harness.deliver(event)
        assert outcome == ("duplicate" if delivery.copy == "redelivered" else "handled")
        last[delivery.kind] = event

    payment = harness.payment(order_id)
    charges = harness.charges(order_id)
    emitted = harness.emitted(order_id)
    assert payment is not None
    assert (payment["cancel_reason"] is not None) == scenario.cancelled

    if not scenario.charged:
        assert (payment["status"], charges, emitted) == ("cancelled", [], [])
    elif scenario.token == "tok_decline":
        assert (payment["status"], charges) == ("declined", [])
        assert [(e.event_type, e.payload) for e in emitted] == [
            ("PaymentDeclined", {"order_id": order_id, "reason": "card_declined"})]
    else:
        [charge] = charges  # the psp never captured twice
        assert charge.amount_cents == TOTAL_CENTS
        captured = {"order_id": order_id, "payment_id": charge.id, "amount_cents": TOTAL_CENTS}
        expected = [("PaymentCaptured", captured)]
        if scenario.cancelled:
            expected.append(("PaymentRefunded", captured))
        assert [(e.event_type, e.payload) for e in emitted] == expected
        assert charge.amount_refunded_cents == (TOTAL_CENTS if scenario.cancelled else 0)
        assert payment["status"] == ("refunded" if scenario.cancelled else "captured")
        assert payment["charge_id"] == charge.id


def test_money_at_the_psp_matches_the_payments(harness: Harness, events: Events) -> None:
    """Captured − refunded at the psp equals what payments holds as captured, not refunded."""
    ok, declined, cancelled_after, cancelled_before = (new_order_id() for _ in range(4))
    for order_id, token in ((ok, "tok_ok"), (declined, "tok_decline"),
                            (cancelled_after, "tok_ok")):
        harness.deliver(events.placed(order_id, token))
        harness.deliver(events.reserved(order_id, 1000))
    harness.deliver(events.cancelled(cancelled_after))
    harness.deliver(events.cancelled(cancelled_before))
    harness.deliver(events.placed(cancelled_before, "tok_ok"))
    harness.deliver(events.reserved(cancelled_before, 1000))

    summary = harness.psp.summary()

    assert (summary.charges, summary.captured_cents) == (2, 2000)
    assert (summary.refunds, summary.refunded_cents) == (1, 1000)
    assert summary.net_cents == 1000  # only `ok` stays captured: the confirmed total
    assert [harness.status(o) for o in (ok, declined, cancelled_after, cancelled_before)] == [
        "captured", "declined", "refunded", "cancelled"]
