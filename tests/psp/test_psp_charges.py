"""Charges: each test token's outcome, and exactly one capture per idempotency key."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from choreo.services.payments.psp_client import (
    Charge,
    PaymentDeclined,
    PspClient,
    PspRequestError,
    PspUnavailable,
)
from tests.psp.support import CLIENT_TIMEOUT_S, SLOW_DELAY_S, Api, Ledger, retry_until_answered

pytestmark = pytest.mark.stack


def test_tok_ok_captures_and_is_readable(api: Api, ledger: Ledger) -> None:
    response = api.charge("key-ok", amount_cents=4200, reference="order-42")

    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("ch_")
    assert body == {"id": body["id"], "status": "captured", "amount_cents": 4200,
                    "currency": "EUR", "reference": "order-42", "amount_refunded_cents": 0}
    assert api.get(f"/v1/charges/{body['id']}").json() == body
    assert api.get("/v1/charges", {"reference": "order-42"}).json() == {"data": [body]}
    assert ledger.count("charges", "idempotency_key", "key-ok") == 1


@pytest.mark.parametrize(("token", "code"), [("tok_decline", "card_declined"),
                                             ("tok_insufficient", "insufficient_funds")])
def test_declines_are_402_stored_and_never_capture(api: Api, ledger: Ledger, token: str,
                                                   code: str) -> None:
    first = api.charge("key-decline", token=token)
    retry = api.charge("key-decline", token=token)

    assert first.status_code == 402
    assert first.json()["error"]["type"] == "card_error"
    assert first.json()["error"]["code"] == code
    assert (retry.status_code, retry.content) == (402, first.content)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert ledger.count("charges") == 0


def test_client_raises_payment_declined(client: PspClient) -> None:
    with pytest.raises(PaymentDeclined) as declined:
        client.charge("key-client-decline", 1000, "EUR", "tok_insufficient", "order-1")
    assert declined.value.code == "insufficient_funds"


def test_tok_error_is_500_on_every_attempt_without_capture(api: Api, ledger: Ledger,
                                                          client: PspClient) -> None:
    for _ in range(3):
        response = api.charge("key-error", token="tok_error")
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "api_error"
    with pytest.raises(PspUnavailable):
        client.charge("key-error", 1250, "EUR", "tok_error", "order-1")
    assert ledger.count("charges") == 0


def test_tok_flaky_fails_once_per_key_then_captures_once(api: Api, ledger: Ledger) -> None:
    first = api.charge("key-flaky", token="tok_flaky")
    assert first.status_code == 503
    assert ledger.count("charges") == 0

    second = api.charge("key-flaky", token="tok_flaky")
    third = api.charge("key-flaky", token="tok_flaky")
    assert second.status_code == 201
    assert (third.status_code, third.content) == (201, second.content)
    assert ledger.count("charges") == 1

    # The first attempt of another key fails again: flakiness is per key.
    assert api.charge("key-flaky-2", token="tok_flaky").status_code == 503


def test_client_retry_after_flaky_yields_one_capture(client: PspClient, ledger: Ledger) -> None:
    with pytest.raises(PspUnavailable):
        client.charge("key-flaky-client", 1250, "EUR", "tok_flaky", "order-7")
    charge = client.charge("key-flaky-client", 1250, "EUR", "tok_flaky", "order-7")
    assert client.charges_for("order-7") == [charge]
    assert ledger.count("charges") == 1


def test_an_answered_failure_is_sent_again_in_place_with_the_same_key(
        api: Api, ledger: Ledger) -> None:
    with PspClient(api.base_url, timeout_s=5.0, answered_retries=1) as psp:
        charge = psp.charge("key-flaky-in-place", 1250, "EUR", "tok_flaky", "order-8")
        assert psp.charges_for("order-8") == [charge]
    assert ledger.count("charges") == 1


def test_a_timeout_is_not_sent_again_in_place(api: Api, ledger: Ledger) -> None:
    """Sent again, the charge still running would have answered 409 at once."""
    with PspClient(api.base_url, timeout_s=CLIENT_TIMEOUT_S, answered_retries=2) as psp:
        with pytest.raises(PspUnavailable) as failure:
            psp.charge("key-slow-in-place", 1250, "EUR", "tok_slow", "order-9")
        assert failure.value.status is None
        charge = retry_until_answered(psp, "key-slow-in-place", "tok_slow", "order-9")
        assert psp.charges_for("order-9") == [charge]
    assert ledger.count("charges") == 1


def test_tok_slow_after_caller_timeout_retry_captures_once(api: Api, ledger: Ledger) -> None:
    impatient = PspClient(api.base_url, timeout_s=CLIENT_TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(PspUnavailable):
        impatient.charge("key-slow", 1250, "EUR", "tok_slow", "order-slow")

    # Still in flight: a retry is told so (409, transient for the client), not run again.
    in_flight = api.charge("key-slow", token="tok_slow", reference="order-slow")
    assert in_flight.status_code == 409
    assert in_flight.json()["error"]["type"] == "idempotency_error"
    with pytest.raises(PspUnavailable):
        impatient.charge("key-slow", 1250, "EUR", "tok_slow", "order-slow")

    charge = retry_until_answered(impatient, "key-slow", "tok_slow", "order-slow")
    assert time.monotonic() - started >= SLOW_DELAY_S
    assert charge.status == "captured"
    assert ledger.count("charges") == 1
    assert impatient.charges_for("order-slow") == [charge]
    impatient.close()


def test_same_key_same_body_replays_byte_for_byte(api: Api, ledger: Ledger) -> None:
    first = api.charge("key-replay")
    replays = [api.charge("key-replay") for _ in range(3)]

    assert "Idempotent-Replayed" not in first.headers
    for replay in replays:
        assert (replay.status_code, replay.content) == (201, first.content)
        assert replay.headers["Idempotent-Replayed"] == "true"
    assert ledger.count("charges") == 1


def test_field_order_and_whitespace_do_not_change_the_request(api: Api, ledger: Ledger) -> None:
    first = api.charge("key-canonical", amount_cents=300, reference="order-c")
    reordered = (b'{ "reference": "order-c", "token": "tok_ok",\n'
                 b'  "currency": "EUR", "amount_cents": 300 }')
    replay = api.post_raw("/v1/charges", reordered, "key-canonical")

    assert (replay.status_code, replay.content) == (201, first.content)
    assert ledger.count("charges") == 1


@pytest.mark.parametrize("change", [{"amount_cents": 1251}, {"reference": "order-2"},
                                    {"token": "tok_decline"}])
def test_same_key_different_body_is_422(api: Api, ledger: Ledger, change: dict[str, object]
                                        ) -> None:
    assert api.charge("key-mismatch").status_code == 201
    body = {"amount_cents": 1250, "currency": "EUR", "token": "tok_ok", "reference": "order-1",
            **change}

    response = api.post("/v1/charges", body, "key-mismatch")

    assert response.status_code == 422
    assert response.json()["error"]["type"] == "idempotency_error"
    assert ledger.count("charges") == 1


def test_client_raises_request_error_for_a_reused_key(client: PspClient) -> None:
    client.charge("key-reused", 1250, "EUR", "tok_ok", "order-1")
    with pytest.raises(PspRequestError) as reused:
        client.charge("key-reused", 1250, "EUR", "tok_ok", "order-2")
    assert (reused.value.status, reused.value.code) == (422, "idempotency_key_reused")


def test_a_charge_key_reused_for_a_refund_is_422(api: Api) -> None:
    charge_id = api.charge("key-shared").json()["id"]
    response = api.post("/v1/refunds", {"charge_id": charge_id}, "key-shared")
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "idempotency_error"


def test_twenty_concurrent_identical_requests_capture_once(api: Api, ledger: Ledger) -> None:
    barrier = threading.Barrier(20)

    def attempt(_: int) -> requests.Response:
        barrier.wait()
        return api.charge("key-concurrent", amount_cents=999, reference="order-race")

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(attempt, range(20)))

    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = {r.content for r in responses if r.status_code == 201}
    assert len(created) == 1, "every 201 must carry the one and only charge"
    assert ledger.count("charges") == 1
    assert ledger.count("charges", "reference", "order-race") == 1


def test_twenty_concurrent_clients_retrying_all_get_the_one_charge(api: Api,
                                                                   ledger: Ledger) -> None:
    """The caller's contract: retry PspUnavailable with the same key until answered."""
    barrier = threading.Barrier(20)

    def attempt(_: int) -> Charge:
        with PspClient(api.base_url, timeout_s=5.0) as psp:
            barrier.wait()
            return retry_until_answered(psp, "key-converge", "tok_slow", "order-converge")

    with ThreadPoolExecutor(max_workers=20) as pool:
        charges = set(pool.map(attempt, range(20)))

    assert len(charges) == 1
    assert ledger.count("charges") == 1

