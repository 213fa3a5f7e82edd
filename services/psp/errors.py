"""The psp's answers as data, and the error shapes callers can rely on.

Every answer, success or failure, is an :class:`ApiResponse` rendered to JSON text
exactly once: the idempotency store keeps that text, so a replay is byte for byte
the original answer. Error bodies follow Stripe's shape,
``{"error": {"type", "code", "message", "param"?}}``, with ``param`` naming the
offending field of a request that failed validation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: str
    """The JSON text as sent; stored verbatim for replays."""

    @classmethod
    def of(cls, status: int, payload: Mapping[str, Any]) -> ApiResponse:
        return cls(status, json.dumps(payload, separators=(",", ":")))

    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def final(self) -> bool:
        """Below 500 the outcome is settled and replayed; a 5xx leaves the key open for a retry."""
        return self.status < 500

    def to_web(self, *, replayed: bool = False) -> web.Response:
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return web.Response(
            status=self.status, text=self.body, content_type="application/json", headers=headers
        )


def error_response(
    status: int, error_type: str, code: str, message: str, param: str | None = None
) -> ApiResponse:
    error: dict[str, str] = {"type": error_type, "code": code, "message": message}
    if param is not None:
        error["param"] = param
    return ApiResponse.of(status, {"error": error})


class ApiError(Exception):
    """A request the psp refuses before doing anything; never stored against its key."""

    def __init__(self, response: ApiResponse) -> None:
        super().__init__(response.body)
        self.response = response


def invalid_request(param: str, message: str, code: str = "parameter_invalid") -> ApiError:
    """400 naming the field, e.g. ``param="amount_cents"``."""
    return ApiError(error_response(400, "invalid_request_error", code, message, param))


def not_found(what: str, param: str | None = None) -> ApiResponse:
    return error_response(404, "invalid_request_error", "resource_missing", f"no such {what}",
                          param)
