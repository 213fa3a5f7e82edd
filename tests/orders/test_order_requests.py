"""Every rule of an order request names its field; valid requests pass untouched."""

from __future__ import annotations

import pytest

from choreo.outbox.errors import ConfigError
from choreo.services.orders.domain import InvalidRequest, parse_order_request
from choreo.services.orders.settings import ApiSettings

VALID = {"customer_id": "c-1", "payment_token": "tok_ok",
         "items": [{"sku": "mug-white", "quantity": 2}]}


def test_a_valid_request_is_parsed() -> None:
    order = parse_order_request(VALID)
    assert (order.customer_id, order.payment_token) == ("c-1", "tok_ok")
    assert [(line.sku, line.quantity) for line in order.items] == [("mug-white", 2)]
    assert order.fingerprint() == parse_order_request(dict(VALID)).fingerprint()


@pytest.mark.parametrize(("body", "field"), [
    ([], "$"),
    ({**VALID, "coupon": "x"}, "coupon"),
    ({**VALID, "items": []}, "items"),
    ({**VALID, "items": "mug"}, "items"),
    ({**VALID, "items": [{"sku": "m"}] * 51}, "items"),
    ({**VALID, "items": ["mug"]}, "items[0]"),
    ({**VALID, "items": [{"sku": "", "quantity": 1}]}, "items[0].sku"),
    ({**VALID, "items": [{"sku": "a b", "quantity": 1}]}, "items[0].sku"),
    ({**VALID, "items": [{"sku": "m", "quantity": 0}]}, "items[0].quantity"),
    ({**VALID, "items": [{"sku": "m", "quantity": 1001}]}, "items[0].quantity"),
    ({**VALID, "items": [{"sku": "m", "quantity": True}]}, "items[0].quantity"),
    ({**VALID, "items": [{"sku": "m", "quantity": "2"}]}, "items[0].quantity"),
    ({**VALID, "items": [{"sku": "m", "quantity": 1, "price": 1}]}, "items[0].price"),
    ({**VALID, "items": [{"sku": "m", "quantity": 1}, {"sku": "m", "quantity": 2}]},
     "items[1].sku"),
    ({**VALID, "customer_id": ""}, "customer_id"),
    ({**VALID, "customer_id": "x" * 101}, "customer_id"),
    ({**VALID, "payment_token": None}, "payment_token"),
    ({**VALID, "payment_token": "tok\x00"}, "payment_token"),
    ({**VALID, "deadline_s": 0}, "deadline_s"),
    ({**VALID, "deadline_s": "soon"}, "deadline_s"),
])
def test_invalid_requests_name_the_field(body: object, field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_order_request(body)
    assert raised.value.field == field


@pytest.mark.parametrize(("deadline_s", "accepted"), [(119.5, True), (120, False),
                                                      (3600, False)])
def test_a_deadline_must_be_below_the_reservation_ttl(deadline_s: float,
                                                      accepted: bool) -> None:
    body = {**VALID, "deadline_s": deadline_s}
    if accepted:
        assert parse_order_request(body, reservation_ttl_s=120).deadline_s == deadline_s
        return
    with pytest.raises(InvalidRequest, match="below the reservation TTL of 120 seconds") \
            as raised:
        parse_order_request(body, reservation_ttl_s=120)
    assert raised.value.field == "deadline_s"


def test_the_api_settings_default_and_refuse_a_deadline_the_ttl_does_not_cover() -> None:
    assert ApiSettings.from_env({}) == ApiSettings(18080, 30.0, 120.0)
    assert ApiSettings.from_env({"CHOREO_RESERVATION_TTL_S": "600",
                                 "CHOREO_ORDER_DEADLINE_S": "300"}).reservation_ttl_s == 600
    with pytest.raises(ConfigError, match="CHOREO_RESERVATION_TTL_S=30 must be greater than"):
        ApiSettings.from_env({"CHOREO_RESERVATION_TTL_S": "30"})
    with pytest.raises(ConfigError, match="CHOREO_ORDER_DEADLINE_S"):
        ApiSettings.from_env({"CHOREO_ORDER_DEADLINE_S": "soon"})


def test_a_wallet_order_needs_no_token_and_a_card_order_does() -> None:
    wallet = {key: value for key, value in VALID.items() if key != "payment_token"}
    assert parse_order_request({**wallet, "payment_method": "wallet"}).payment_method == "wallet"
    assert parse_order_request({**VALID, "payment_method": "wallet", "payment_token": ""}
                               ).payment_token == ""
    assert parse_order_request(VALID).payment_method == "card"
    for body, field in (({**wallet, "payment_method": "card"}, "payment_token"),
                        ({**VALID, "payment_method": "cash"}, "payment_method"),
                        ({**VALID, "payment_method": "wallet", "payment_token": 7},
                         "payment_token")):
        with pytest.raises(InvalidRequest) as raised:
            parse_order_request(body)
        assert raised.value.field == field


def test_the_payment_method_is_part_of_the_request_a_key_stands_for() -> None:
    card = parse_order_request(VALID)
    wallet = parse_order_request({**VALID, "payment_method": "wallet"})
    assert card.fingerprint() != wallet.fingerprint()
