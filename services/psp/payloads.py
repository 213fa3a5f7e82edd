"""Turn untrusted request input into typed requests, or a 400 naming the field.

Validation is strict on purpose: the psp is the audited side effect, so anything a
caller did not mean (an unknown field, a float amount, a boolean for a number, a
control character PostgreSQL cannot store) is refused before any work is done, and
bad input can never surface as a 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from choreo.services.psp.errors import invalid_request
from choreo.services.psp.tokens import Token

MAX_AMOUNT_CENTS = 10_000_000_000
"""A hundred million euros: larger is a caller bug, and sums stay far from bigint's limit."""

MAX_TEXT_LENGTH = 255
SUPPORTED_CURRENCIES = frozenset({"EUR"})
"""One currency keeps the ledger summary a single meaningful sum."""


@dataclass(frozen=True)
class ChargeRequest:
    amount_cents: int
    currency: str
    token: Token
    reference: str


@dataclass(frozen=True)
class RefundRequest:
    charge_id: str
    amount_cents: int | None
    """None refunds whatever of the charge is not refunded yet."""


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:  # also invalid UTF-8 and integers too long to parse
        raise invalid_request("body", "the request body must be valid JSON",
                              code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid_request("body", "the request body must be a JSON object",
                              code="invalid_json")
    return body


def idempotency_key(value: str | None) -> str:
    if value is None:
        raise invalid_request("Idempotency-Key", "the Idempotency-Key header is required",
                              code="parameter_missing")
    return _text("Idempotency-Key", value)


def charge_request(body: Mapping[str, Any]) -> ChargeRequest:
    _no_unknown_fields(body, {"amount_cents", "currency", "token", "reference"})
    amount_cents = _amount(_required(body, "amount_cents"))
    currency = _text("currency", _required(body, "currency"))
    if currency not in SUPPORTED_CURRENCIES:
        raise invalid_request("currency", f"currency must be one of {sorted(SUPPORTED_CURRENCIES)}")
    token = _text("token", _required(body, "token"))
    try:
        known_token = Token(token)
    except ValueError:
        raise invalid_request("token", f"unknown test token {token!r}; use one of"
                              f" {[t.value for t in Token]}", code="resource_missing") from None
    reference = _text("reference", _required(body, "reference"))
    return ChargeRequest(amount_cents, currency, known_token, reference)


def refund_request(body: Mapping[str, Any]) -> RefundRequest:
    _no_unknown_fields(body, {"charge_id", "amount_cents"})
    amount = body.get("amount_cents")
    return RefundRequest(
        charge_id=_text("charge_id", _required(body, "charge_id")),
        amount_cents=None if amount is None else _amount(amount),
    )


def charge_reference(value: str | None) -> str:
    """The ``reference`` query parameter of the charge list."""
    if value is None:
        raise invalid_request("reference", "the reference query parameter is required",
                              code="parameter_missing")
    return _text("reference", value)


def path_id(value: str) -> str:
    """The ``{id}`` of a resource path; a NUL in it must be a 400, not a database error."""
    return _text("id", value)


def _no_unknown_fields(body: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(body.keys() - known)
    if unknown:
        raise invalid_request(unknown[0], f"unknown field {unknown[0]!r}",
                              code="parameter_unknown")


def _required(body: Mapping[str, Any], name: str) -> Any:
    if name not in body or body[name] is None:
        raise invalid_request(name, f"{name} is required", code="parameter_missing")
    return body[name]


def _amount(value: Any) -> int:
    # bool is an int in Python; JSON true is not an amount.
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_request("amount_cents", "amount_cents must be an integer number of cents")
    if not 0 < value <= MAX_AMOUNT_CENTS:
        raise invalid_request("amount_cents",
                              f"amount_cents must be between 1 and {MAX_AMOUNT_CENTS}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid_request(name, f"{name} must be a string")
    if not 0 < len(value) <= MAX_TEXT_LENGTH:
        raise invalid_request(name, f"{name} must be 1 to {MAX_TEXT_LENGTH} characters")
    if not value.isprintable():
        raise invalid_request(name, f"{name} must not contain control characters")
    return value
