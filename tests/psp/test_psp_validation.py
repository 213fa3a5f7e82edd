"""Bad input is a 400 JSON error naming the field: never a 500, never a capture."""

from __future__ import annotations

from typing import Any

import pytest

from choreo.services.payments.psp_client import PspClient, PspRequestError
from tests.psp.support import Api, Ledger

pytestmark = pytest.mark.stack

VALID_CHARGE = {"amount_cents": 1250, "currency": "EUR", "token": "tok_ok",
                "reference": "order-1"}


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in VALID_CHARGE.items() if k != field}


@pytest.mark.parametrize(("body", "param"), [
    (without("amount_cents"), "amount_cents"),
    ({**VALID_CHARGE, "amount_cents": None}, "amount_cents"),
    ({**VALID_CHARGE, "amount_cents": 0}, "amount_cents"),
    ({**VALID_CHARGE, "amount_cents": -5}, "amount_cents"),
    ({**VALID_CHARGE, "amount_cents": 12.5}, "amount_cents"),
    ({**VALID_CHARGE, "amount_cents": "1250"}, "amount_cents"),
    ({**VALID_CHARGE, "amount_cents": True}, "amount_cents"),
    ({**VALID_CHARGE, "amount_cents": 10**30}, "amount_cents"),
    (without("currency"), "currency"),
    ({**VALID_CHARGE, "currency": "eur"}, "currency"),
    ({**VALID_CHARGE, "currency": "USD"}, "currency"),
    ({**VALID_CHARGE, "currency": 978}, "currency"),
    (without("token"), "token"),
    ({**VALID_CHARGE, "token": "tok_unknown"}, "token"),
    ({**VALID_CHARGE, "token": ["tok_ok"]}, "token"),
    (without("reference"), "reference"),
    ({**VALID_CHARGE, "reference": ""}, "reference"),
    ({**VALID_CHARGE, "reference": "x" * 256}, "reference"),
    ({**VALID_CHARGE, "reference": "order\u0000-1"}, "reference"),
    ({**VALID_CHARGE, "reference": "\ud800"}, "reference"),
    ({**VALID_CHARGE, "metadata": {"a": 1}}, "metadata"),
])
def test_invalid_charge_field_is_named(api: Api, ledger: Ledger, body: dict[str, Any],
                                       param: str) -> None:
    response = api.post("/v1/charges", body, "key-invalid")

    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"]
    assert ledger.count("charges") == 0
    # A refused request is not stored: the key stays free for a correct request.
    assert api.charge("key-invalid").status_code == 201


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b'"text"', b"null",
                                  b'{"amount_cents": 1', b"\xff\xfe{}", b"1" * 5000,
                                  b'{"amount_cents": NaN}'])
def test_body_that_is_not_a_json_object_is_400(api: Api, data: bytes) -> None:
    response = api.post_raw("/v1/charges", data, "key-garbage")

    assert response.status_code == 400
    assert response.json()["error"]["param"] in {"body", "amount_cents"}


def test_missing_idempotency_key_is_400(api: Api, ledger: Ledger) -> None:
    response = api.post("/v1/charges", VALID_CHARGE, key=None)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"
    assert ledger.count("charges") == 0


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_malformed_idempotency_key_is_400(api: Api, key: str) -> None:
    response = api.post("/v1/charges", VALID_CHARGE, key=key)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


@pytest.mark.parametrize(("body", "param"), [
    ({}, "charge_id"),
    ({"charge_id": 7}, "charge_id"),
    ({"charge_id": "ch_x", "amount_cents": 0}, "amount_cents"),
    ({"charge_id": "ch_x", "amount_cents": "5"}, "amount_cents"),
    ({"charge_id": "ch_x", "reason": "duplicate"}, "reason"),
])
def test_invalid_refund_field_is_named(api: Api, body: dict[str, Any], param: str) -> None:
    response = api.post("/v1/refunds", body, "key-refund-invalid")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_refund_without_idempotency_key_is_400(api: Api) -> None:
    response = api.post("/v1/refunds", {"charge_id": "ch_x"}, key=None)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


def test_lookups_of_unknown_things_are_json_4xx(api: Api) -> None:
    assert api.get("/v1/charges/ch_nope").status_code == 404
    assert api.get("/v1/charges/ch_nope").json()["error"]["code"] == "resource_missing"
    listing = api.get("/v1/charges")
    assert (listing.status_code, listing.json()["error"]["param"]) == (400, "reference")
    assert api.get("/v1/charges", {"reference": "nobody"}).json() == {"data": []}
    assert api.get("/v1/nowhere").json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/v1/charges/%00", "/v1/charges/" + "c" * 256])
def test_malformed_charge_id_in_the_path_is_400(api: Api, path: str) -> None:
    response = api.get(path)
    assert (response.status_code, response.json()["error"]["param"]) == (400, "id")


def test_lookup_reference_with_control_character_is_400(api: Api) -> None:
    response = api.get("/v1/charges", {"reference": "order\x00"})
    assert (response.status_code, response.json()["error"]["param"]) == (400, "reference")


def test_oversized_body_is_a_json_4xx(api: Api) -> None:
    response = api.post_raw("/v1/charges", b"{" + b" " * 100_000 + b"}", "key-big")
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_client_raises_request_error_naming_the_field(client: PspClient) -> None:
    with pytest.raises(PspRequestError) as refused:
        client.charge("key-client-invalid", 0, "EUR", "tok_ok", "order-1")
    assert (refused.value.status, refused.value.param) == (400, "amount_cents")
