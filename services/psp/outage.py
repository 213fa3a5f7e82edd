"""A psp that is failing or slow for a while, rather than dead: the fault tests and chaos
runs switch on with ``POST /admin/outage``.

While an outage lasts, every charge and refund either answers 503 at once without doing
anything (``fail``, a provider's bad minutes) or waits ``delay_s`` before it is carried
out as usual (``slow``). A caller whose timeout is shorter than the delay sees a
timeout, yet the capture happens: its retry with the same key finds it (409 while it
runs, then the stored answer), exactly the case idempotency keys exist for.

Only callers on the loopback interface may switch it: in a container the psp listens
on every interface, and the fault is a test tool, not part of the provider's API.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from choreo.services.psp.errors import ApiResponse, error_response, invalid_request

MODES = ("fail", "slow")
MAX_SECONDS = 3600.0
LOOPBACK = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True)
class Outage:
    mode: str
    ends_at: float
    """On the monotonic clock."""
    delay_s: float

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "remaining_s": round(max(0.0, self.ends_at - time.monotonic()),
                                                         2), "delay_s": self.delay_s}


class OutageSwitch:
    def __init__(self) -> None:
        self._outage: Outage | None = None

    def start(self, body: dict[str, Any], default_delay_s: float) -> Outage:
        """From ``{"mode", "seconds", "delay_s"?}``; a 400 naming the field otherwise."""
        mode = body.get("mode")
        if mode not in MODES:
            raise invalid_request("mode", f"mode must be one of {', '.join(MODES)}")
        seconds = _number(body, "seconds", None, MAX_SECONDS)
        delay_s = _number(body, "delay_s", default_delay_s, 300.0)
        self._outage = Outage(mode, time.monotonic() + seconds, delay_s)
        return self._outage

    def end(self) -> None:
        self._outage = None

    @property
    def current(self) -> Outage | None:
        outage = self._outage
        return outage if outage is not None and time.monotonic() < outage.ends_at else None

    async def interfere(self) -> ApiResponse | None:
        """The 503 to answer instead, or None to go on (after the delay when slow)."""
        outage = self.current
        if outage is None:
            return None
        if outage.mode == "fail":
            return error_response(503, "api_error", "provider_outage",
                                  "The payment provider is unavailable; retry with the same key.")
        await asyncio.sleep(outage.delay_s)
        return None


def _number(body: dict[str, Any], field: str, default: float | None, maximum: float) -> float:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value <= maximum:
        raise invalid_request(field, f"{field} must be a number in (0, {maximum:g}]")
    return float(value)
