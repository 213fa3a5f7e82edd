"""The psp's circuit breaker as payments' handlers meet it: an outage opens it and the
handler says retry later; a psp that answers, even with an error about one request,
keeps it closed; after the outage the same event captures once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from choreo.outbox.breaker import Circuit, CircuitSettings
from choreo.outbox.errors import RetryLater
from choreo.services.payments.attempts import AttemptLog
from choreo.services.payments.domain import ProviderUnavailable
from choreo.services.payments.provider import psp_down
from choreo.services.payments.psp_client import PaymentDeclined, PspClient, PspUnavailable
from tests.payments.support import CONSUMER, Events, Harness, handlers_for, new_order_id

RESET_S = 0.3


@pytest.mark.parametrize(("error", "down"), [
    (PspUnavailable("timeout"), True),
    (PspUnavailable("502", 502), True),
    (PspUnavailable("503", 503), True),
    (PspUnavailable("non-JSON", 200), True),
    (PspUnavailable("in flight", 409), False),
    (PspUnavailable("its own error", 500), False),
    (PaymentDeclined("card_declined", "no"), False),
    (ValueError("a bug"), False),
])
def test_what_says_the_psp_is_down(error: Exception, down: bool) -> None:
    assert psp_down(error) is down


@pytest.fixture
def circuit(request: pytest.FixtureRequest) -> Circuit:
    return Circuit(f"psp-{request.node.name}", CircuitSettings(2, RESET_S), counts=psp_down)


@pytest.fixture
def guarded(payments_dsn: str, psp: PspClient, circuit: Circuit) -> Iterator[Harness]:
    with psycopg.connect(payments_dsn, autocommit=True) as conn, \
            AttemptLog(payments_dsn) as attempt_log:
        conn.execute("DELETE FROM inbox WHERE consumer = %s", (CONSUMER,))
        yield Harness(conn, handlers_for(psp, attempt_log, circuit), psp)


@pytest.mark.stack
def test_an_outage_opens_the_breaker_then_the_same_event_captures_once(
        guarded: Harness, circuit: Circuit, events: Events, psp: PspClient) -> None:
    order_id = new_order_id()
    guarded.deliver(events.placed(order_id, "tok_ok"))
    reserved = events.reserved(order_id, 1250)
    psp.start_outage("fail", 30)
    try:
        with pytest.raises(ProviderUnavailable):
            guarded.deliver(reserved)
        with pytest.raises(RetryLater) as signal:  # the second failure opens it
            guarded.deliver(reserved)
        assert 0 < signal.value.after_s <= RESET_S
        assert circuit.state == "open"
        with pytest.raises(RetryLater):  # open: the psp is not even asked
            guarded.deliver(reserved)
    finally:
        psp.end_outage()
    assert guarded.status(order_id) == "awaiting"
    assert guarded.emitted(order_id) == []
    time.sleep(RESET_S)

    assert guarded.deliver(reserved) == "handled"  # the half-open probe
    assert circuit.state == "closed"
    [charge] = guarded.charges(order_id)
    assert guarded.emitted_types(order_id) == ["PaymentCaptured"]
    assert guarded.emitted(order_id)[0].payload["payment_id"] == charge.id


@pytest.mark.stack
def test_an_order_whose_charge_always_fails_does_not_open_it(
        guarded: Harness, circuit: Circuit, events: Events) -> None:
    order_id = new_order_id()
    guarded.deliver(events.placed(order_id, "tok_error"))
    for _ in range(4):
        with pytest.raises(ProviderUnavailable, match="500"):
            guarded.deliver(events.reserved(order_id, 100))
    assert circuit.state == "closed"
