"""The test card tokens and what each makes the psp do.

Like a real provider's test mode, the token alone decides the outcome, so a caller's
tests (and chaos runs) can provoke every path deterministically:

====================  ========================================================
``tok_ok``            captured at once (201)
``tok_decline``       402 ``card_declined``; stored, so a retry gets the same 402
``tok_insufficient``  402 ``insufficient_funds``; stored like any decline
``tok_slow``          captured after ``CHOREO_PSP_SLOW_DELAY_S`` (default 2 s), so
                      a caller's timeout fires; a retry while it runs gets 409,
                      a retry after it finished gets the stored 201: one capture
``tok_flaky``         503 without capturing on the first attempt for an
                      idempotency key, captured on the next attempt with that key
``tok_error``         500 ``api_error`` without capturing, on every attempt
====================  ========================================================

Any other token is refused with 400 (``param: "token"``).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from choreo.services.psp.errors import ApiResponse, error_response


class Token(StrEnum):
    OK = "tok_ok"
    DECLINE = "tok_decline"
    INSUFFICIENT = "tok_insufficient"
    SLOW = "tok_slow"
    FLAKY = "tok_flaky"
    ERROR = "tok_error"


DECLINE_MESSAGES = {
    Token.DECLINE: ("card_declined", "Your card was declined."),
    Token.INSUFFICIENT: ("insufficient_funds", "Your card has insufficient funds."),
}


async def refusal(token: Token, attempt: int, slow_delay_s: float) -> ApiResponse | None:
    """The answer to give instead of capturing, or None to capture (after any delay).

    ``attempt`` counts the runs for this idempotency key, starting at 1; a run that
    crashed before committing is not counted.
    """
    if token in DECLINE_MESSAGES:
        code, message = DECLINE_MESSAGES[token]
        return error_response(402, "card_error", code, message)
    if token is Token.ERROR:
        return error_response(500, "api_error", "internal_error",
                              "The payment provider failed; nothing was captured.")
    if token is Token.FLAKY and attempt == 1:
        return error_response(503, "api_error", "temporarily_unavailable",
                              "The payment provider is busy; retry with the same key.")
    if token is Token.SLOW:
        await asyncio.sleep(slow_delay_s)
    return None
