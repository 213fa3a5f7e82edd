"""Refunds: full, partial, never more than captured, idempotent like charges."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from choreo.services.payments.psp_client import PspClient, PspRequestError
from tests.psp.support import Api, Ledger

pytestmark = pytest.mark.stack


def captured(api: Api, amount_cents: int = 1000) -> str:
    response = api.charge("key-charge", amount_cents=amount_cents)
    assert response.status_code == 201
    return str(response.json()["id"])


def test_full_refund_by_default(api: Api, ledger: Ledger) -> None:
    charge_id = captured(api, 1000)

    response = api.post("/v1/refunds", {"charge_id": charge_id}, "key-refund")

    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("re_")
    assert body == {"id": body["id"], "charge_id": charge_id, "amount_cents": 1000,
                    "status": "succeeded"}
    assert api.get(f"/v1/charges/{charge_id}").json()["amount_refunded_cents"] == 1000
    assert ledger.count("refunds") == 1


def test_partial_refunds_up_to_the_captured_amount(client: PspClient, api: Api,
                                                   ledger: Ledger) -> None:
    charge_id = captured(api, 1000)

    first = client.refund("key-r1", charge_id, 300)
    rest = client.refund("key-r2", charge_id)  # what is left: 700

    assert (first.amount_cents, rest.amount_cents) == (300, 700)
    with pytest.raises(PspRequestError) as already:
        client.refund("key-r3", charge_id)
    assert (already.value.status, already.value.code) == (400, "charge_already_refunded")
    assert ledger.count("refunds") == 2


def test_over_refund_is_400_and_refunds_nothing(api: Api, ledger: Ledger) -> None:
    charge_id = captured(api, 1000)
    assert api.post("/v1/refunds", {"charge_id": charge_id, "amount_cents": 600},
                    "key-r1").status_code == 201

    response = api.post("/v1/refunds", {"charge_id": charge_id, "amount_cents": 401}, "key-r2")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "amount_too_large"
    assert response.json()["error"]["param"] == "amount_cents"
    assert ledger.count("refunds") == 1


def test_unknown_charge_is_404(api: Api, client: PspClient) -> None:
    response = api.post("/v1/refunds", {"charge_id": "ch_missing"}, "key-r404")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"
    with pytest.raises(PspRequestError) as missing:
        client.refund("key-r404-client", "ch_missing")
    assert missing.value.status == 404


def test_refund_retry_with_same_key_refunds_once(api: Api, ledger: Ledger) -> None:
    charge_id = captured(api, 1000)
    body = {"charge_id": charge_id, "amount_cents": 250}

    first = api.post("/v1/refunds", body, "key-refund")
    retry = api.post("/v1/refunds", body, "key-refund")
    other_amount = api.post("/v1/refunds", {**body, "amount_cents": 251}, "key-refund")

    assert (retry.status_code, retry.content) == (201, first.content)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert other_amount.status_code == 422
    assert ledger.count("refunds") == 1


def test_concurrent_refunds_with_different_keys_never_exceed_the_charge(
    api: Api, ledger: Ledger
) -> None:
    charge_id = captured(api, 100)
    barrier = threading.Barrier(10)

    def refund(index: int) -> requests.Response:
        barrier.wait()
        return api.post("/v1/refunds", {"charge_id": charge_id, "amount_cents": 30},
                        f"key-refund-{index}")

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(r.status_code for r in pool.map(refund, range(10)))

    assert statuses == [201] * 3 + [400] * 7
    assert api.get(f"/v1/charges/{charge_id}").json()["amount_refunded_cents"] == 90
    assert ledger.count("refunds") == 3
