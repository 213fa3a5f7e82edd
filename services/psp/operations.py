"""What a charge and a refund do once their idempotency key is held.

Each runs inside the key's transaction (see idempotency.py) and returns the answer to
store; it never commits on its own, so a crash leaves neither a capture nor a refund
without its stored answer.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from choreo.services.psp import ledger, tokens
from choreo.services.psp.errors import ApiResponse, error_response, not_found
from choreo.services.psp.payloads import ChargeRequest, RefundRequest


async def charge(conn: AsyncConnection[Any], key: str, request: ChargeRequest, attempt: int,
                 slow_delay_s: float) -> ApiResponse:
    refusal = await tokens.refusal(request.token, attempt, slow_delay_s)
    if refusal is not None:
        return refusal
    captured = await ledger.insert_charge(conn, key, request)
    return ApiResponse.of(201, captured.as_json())


async def refund(conn: AsyncConnection[Any], key: str, request: RefundRequest) -> ApiResponse:
    charge = await ledger.lock_charge(conn, request.charge_id)
    if charge is None:
        return not_found("charge", param="charge_id")
    remaining = charge.amount_cents - charge.amount_refunded_cents
    if remaining == 0:
        return error_response(400, "invalid_request_error", "charge_already_refunded",
                              f"charge {charge.id} is already fully refunded")
    amount = remaining if request.amount_cents is None else request.amount_cents
    if amount > remaining:
        return error_response(400, "invalid_request_error", "amount_too_large",
                              f"refund of {amount} exceeds the {remaining} cents of charge"
                              f" {charge.id} not refunded yet", param="amount_cents")
    refunded = await ledger.insert_refund(conn, key, charge.id, amount)
    return ApiResponse.of(201, refunded.as_json())
