"""What an order request must look like, and how an order's status may change.

Validation happens before anything touches the database, so a bad request can never
leave half an order behind; every rule names the field it is about.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from choreo.outbox import http

MAX_ITEMS = 50
MAX_QUANTITY = 1000
MAX_TEXT = 100
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_DEADLINE_S = 3600
ALLOWED_FIELDS = {"customer_id", "items", "payment_token", "payment_method", "deadline_s"}
PAYMENT_METHODS = ("card", "wallet")
"""card: payments charges the token at the psp; wallet: the wallet service debits the
customer's balance, and no token is needed."""


class Status(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


TERMINAL = {Status.CONFIRMED, Status.REJECTED, Status.CANCELLED}
"""CONFIRMED is terminal for the saga, though a customer may still cancel it."""


@dataclass(frozen=True)
class Transition:
    """How an order ends: its new status and the event that says so to the others."""

    status: Status
    event_type: str
    payload: dict[str, Any]
    reason: str | None = None
    total_cents: int | None = None
    """Set when the saga learns the amount (the capture); None leaves it as it is."""

    @staticmethod
    def cancel(order_id: str, reason: str) -> Transition:
        return Transition(Status.CANCELLED, "OrderCancelled",
                          {"order_id": order_id, "reason": reason}, reason)


InvalidRequest = http.InvalidRequest
"""A request the customer must fix; ``field`` is a JSON path such as ``items[2].sku``."""


@dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class OrderRequest:
    customer_id: str
    items: tuple[OrderLine, ...]
    payment_token: str
    deadline_s: float | None = None
    """How long the customer will wait; the service's default when absent."""
    payment_method: str = "card"

    def fingerprint(self) -> str:
        """Same request, same hash: how a reused Idempotency-Key is told apart from misuse."""
        canonical = json.dumps({
            "customer_id": self.customer_id, "payment_token": self.payment_token,
            "items": [[line.sku, line.quantity] for line in self.items],
            "deadline_s": self.deadline_s, "payment_method": self.payment_method,
        }, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def items_json(self) -> list[dict[str, Any]]:
        return [{"sku": line.sku, "quantity": line.quantity} for line in self.items]


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(field, "required, a non-empty string")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise InvalidRequest(field, f"at most {MAX_TEXT} characters, no NUL")
    return value


def _line(index: int, raw: object) -> OrderLine:
    field = f"items[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(field, "must be an object with sku and quantity")
    unknown = set(raw) - {"sku", "quantity"}
    if unknown:
        raise InvalidRequest(f"{field}.{sorted(unknown)[0]}", "unknown field")
    sku = raw.get("sku")
    if not isinstance(sku, str) or not SKU_PATTERN.match(sku):
        raise InvalidRequest(f"{field}.sku", "required, 1-64 letters, digits, '.', '_' or '-'")
    quantity = raw.get("quantity")
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        raise InvalidRequest(f"{field}.quantity", "required, an integer")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidRequest(f"{field}.quantity", f"must be between 1 and {MAX_QUANTITY}")
    return OrderLine(sku, quantity)


def parse_order_request(body: object, reservation_ttl_s: float = math.inf) -> OrderRequest:
    """``deadline_s`` must also be below the reservation TTL: an order still PENDING when
    its reservation expires would be confirmed against released units."""
    if not isinstance(body, dict):
        raise InvalidRequest("$", "the body must be a JSON object")
    unknown = set(body) - ALLOWED_FIELDS
    if unknown:
        raise InvalidRequest(sorted(unknown)[0], "unknown field")
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("items", "required, a non-empty array")
    if len(items) > MAX_ITEMS:
        raise InvalidRequest("items", f"at most {MAX_ITEMS} lines")
    lines = tuple(_line(index, raw) for index, raw in enumerate(items))
    seen: dict[str, int] = {}
    for index, line in enumerate(lines):
        if line.sku in seen:
            raise InvalidRequest(f"items[{index}].sku",
                                 f"duplicates items[{seen[line.sku]}]; combine the quantities")
        seen[line.sku] = index
    deadline_s = body.get("deadline_s")
    if deadline_s is not None and (
        not isinstance(deadline_s, int | float) or isinstance(deadline_s, bool)
        or not 1 <= deadline_s <= MAX_DEADLINE_S
    ):
        raise InvalidRequest("deadline_s", f"a number of seconds between 1 and {MAX_DEADLINE_S}")
    if deadline_s is not None and deadline_s >= reservation_ttl_s:
        raise InvalidRequest("deadline_s", f"must be below the reservation TTL of"
                                           f" {reservation_ttl_s:g} seconds")
    method = body.get("payment_method", "card")
    if method not in PAYMENT_METHODS:
        raise InvalidRequest("payment_method", f"one of {', '.join(PAYMENT_METHODS)}")
    token = _text(body, "payment_token") if method == "card" else body.get("payment_token", "")
    if not isinstance(token, str) or len(token) > MAX_TEXT:
        raise InvalidRequest("payment_token", "a wallet order needs none; if sent, a string")
    return OrderRequest(_text(body, "customer_id"), lines, token,
                        None if deadline_s is None else float(deadline_s), method)


def may_cancel(status: Status) -> bool:
    """A customer may cancel until the order is rejected or already cancelled."""
    return status in (Status.PENDING, Status.CONFIRMED)
