"""The payment rules without a database or a psp: what each event leads to."""

from __future__ import annotations

import pytest

from services.payments.domain import InvalidReservation, Payment, PaymentStatus, Step, next_step

NEW = Payment("order-1")
HAS_TOKEN = NEW.with_token("tok_ok")
HAS_TOTAL = NEW.with_reservation(500)
CAPTURED = HAS_TOKEN.with_reservation(500).captured("ch_1", 500)
DECLINED = HAS_TOKEN.with_reservation(500).declined("card_declined")


@pytest.mark.parametrize(("before", "after", "step"), [
    (NEW, HAS_TOKEN, Step.NOTHING),
    (NEW, HAS_TOTAL, Step.NOTHING),
    (HAS_TOKEN, HAS_TOKEN.with_reservation(500), Step.CHARGE),
    (HAS_TOTAL, HAS_TOTAL.with_token("tok_ok"), Step.CHARGE),
    (CAPTURED, CAPTURED.cancel("customer"), Step.REFUND),
    (DECLINED, DECLINED.cancel("payment_declined"), Step.NOTHING),
    # A half-known order is cancelled: the event with the other half may have captured
    # and rolled back.
    (HAS_TOKEN, HAS_TOKEN.cancel("timeout"), Step.FIND_LOST_CAPTURE),
    (HAS_TOTAL, HAS_TOTAL.cancel("timeout"), Step.FIND_LOST_CAPTURE),
    # An order that knew neither cannot have been charged.
    (NEW, NEW.cancel("customer"), Step.NOTHING),
    # A cancelled order gets what a charge needs: it is never charged, only looked up.
    (HAS_TOKEN.cancel("timeout"), HAS_TOKEN.cancel("timeout").with_reservation(500),
     Step.FIND_LOST_CAPTURE),
    # ... once: a re-emitted event adds nothing new.
    (HAS_TOKEN.with_reservation(500).cancel("timeout"),
     HAS_TOKEN.with_reservation(500).cancel("timeout"), Step.NOTHING),
    (CAPTURED.refunded("ch_1", 500, 500), CAPTURED.refunded("ch_1", 500, 500).cancel("x"),
     Step.NOTHING),
])
def test_next_step(before: Payment, after: Payment, step: Step) -> None:
    assert next_step(before, after) is step


def test_cancelling_an_uncharged_payment_forbids_the_charge() -> None:
    cancelled = HAS_TOTAL.cancel("customer").with_token("tok_ok")

    assert cancelled.status is PaymentStatus.CANCELLED
    assert cancelled.cancel_reason == "customer"


def test_the_first_token_total_and_cancellation_win() -> None:
    payment = HAS_TOKEN.with_token("tok_other").with_reservation(500).with_reservation(1)

    assert (payment.token, payment.reserved_cents) == ("tok_ok", 500)
    assert payment.cancel("customer").cancel("timeout").cancel_reason == "customer"


def test_a_reservation_without_a_positive_total_is_refused() -> None:
    with pytest.raises(InvalidReservation, match="order-1: reserved total 0"):
        NEW.with_reservation(0)
