"""The payment rules without a database or a psp: what each event leads to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from choreo.services.payments.domain import (
    DEADLINE_PASSED,
    ChargeAttempt,
    InvalidReservation,
    Payment,
    PaymentStatus,
    Step,
    next_step,
)

DEADLINE = datetime(2030, 1, 1, 0, 15, tzinfo=UTC)
NEW = Payment("order-1")
HAS_TOKEN = NEW.with_token("tok_ok", DEADLINE)
HAS_TOTAL = NEW.with_reservation(500)
HAS_BOTH = HAS_TOKEN.with_reservation(500)
ATTEMPT = ChargeAttempt("tok_ok", 500)
CHARGING = HAS_BOTH.with_attempt(ATTEMPT)
CAPTURED = CHARGING.captured("ch_1", 500)
DECLINED = CHARGING.declined("card_declined")


@pytest.mark.parametrize(("payment", "step"), [
    (NEW, Step.NOTHING),
    (HAS_TOKEN, Step.NOTHING),
    (HAS_TOTAL, Step.NOTHING),
    (HAS_BOTH, Step.CHARGE),
    (CAPTURED, Step.NOTHING),
    (CAPTURED.cancel("customer"), Step.REFUND),
    (DECLINED.cancel("payment_declined"), Step.NOTHING),
    # Nothing was sent without an attempt: a cancelled order is never charged.
    (HAS_TOKEN.cancel("timeout"), Step.NOTHING),
    (HAS_TOKEN.cancel("timeout").with_reservation(500), Step.NOTHING),
    (HAS_BOTH.cancel("timeout"), Step.NOTHING),
    # Charging: the request may be in flight, so it is sent again until its answer is
    # final, cancelled or not, even where the events that led to it rolled back.
    (CHARGING, Step.CHARGE),
    (CHARGING.cancel("timeout"), Step.CHARGE),
    (HAS_TOKEN.with_attempt(ATTEMPT), Step.CHARGE),
    (NEW.with_attempt(ATTEMPT).cancel("customer"), Step.CHARGE),
    (CAPTURED.refunded("ch_1", 500, 500).cancel("x"), Step.NOTHING),
])
def test_next_step(payment: Payment, step: Step) -> None:
    assert next_step(payment) is step


def test_a_cancelled_charging_payment_stays_charging_until_the_answer() -> None:
    cancelled = CHARGING.cancel("customer")

    assert (cancelled.status, cancelled.charging) == (PaymentStatus.AWAITING, True)
    captured = cancelled.captured("ch_1", 500)
    assert (captured.charging, captured.cancel_reason) == (False, "customer")


def test_the_attempt_fills_what_rolled_back() -> None:
    payment = HAS_TOKEN.with_attempt(ChargeAttempt("tok_other", 700))

    assert (payment.token, payment.reserved_cents) == ("tok_ok", 700)


def test_cancelling_an_uncharged_payment_forbids_the_charge() -> None:
    cancelled = HAS_TOTAL.cancel("customer").with_token("tok_ok", DEADLINE)

    assert cancelled.status is PaymentStatus.CANCELLED
    assert cancelled.cancel_reason == "customer"


def test_the_first_token_total_and_cancellation_win() -> None:
    payment = HAS_TOKEN.with_token("tok_other", DEADLINE).with_reservation(500).with_reservation(1)

    assert (payment.token, payment.reserved_cents) == ("tok_ok", 500)
    assert payment.cancel("customer").cancel("timeout").cancel_reason == "customer"


def test_a_reservation_without_a_positive_total_is_refused() -> None:
    with pytest.raises(InvalidReservation, match="order-1: reserved total 0"):
        NEW.with_reservation(0)


def test_past_its_deadline_an_uncharged_payment_is_cancelled_and_never_charged() -> None:
    after = DEADLINE + timedelta(milliseconds=1)
    assert HAS_BOTH.lapsed(DEADLINE - timedelta(seconds=1)) is HAS_BOTH
    lapsed = HAS_BOTH.lapsed(after)
    assert (lapsed.status, lapsed.cancel_reason) == (PaymentStatus.CANCELLED, DEADLINE_PASSED)
    assert next_step(lapsed) is Step.NOTHING
    assert next_step(lapsed.cancel("timeout")) is Step.NOTHING  # orders' own cancel after
    assert HAS_TOKEN.lapsed(after).with_reservation(500).cancelled


@pytest.mark.parametrize("payment", [CHARGING, CAPTURED, DECLINED, NEW, HAS_TOTAL])
def test_the_deadline_leaves_alone_what_may_be_charged_or_has_no_deadline(
        payment: Payment) -> None:
    """A charging payment's request may be in flight: only the psp's answer ends it."""
    assert payment.lapsed(DEADLINE + timedelta(days=1)) is payment
