"""Whatever goes wrong inside a handler, the answer is JSON, never aiohttp's HTML page.

The API's own middleware around handlers that fail the two ways no request can provoke
on purpose: a bug (500 ``internal_error``) and a database error raised mid-request
(503 ``database_unavailable`` with Retry-After). The real outage is in
test_database_outage.py.
"""

from __future__ import annotations

import asyncio

import psycopg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from choreo.services.orders.api import observe


async def failing(request: web.Request) -> web.Response:
    if request.match_info["how"] == "bug":
        raise RuntimeError("a bug")
    raise psycopg.OperationalError("server closed the connection unexpectedly")


async def fetch(path: str) -> tuple[int, dict[str, str], object]:
    app = web.Application(middlewares=[observe])
    app.router.add_get("/fail/{how}", failing)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get(path)
        return response.status, dict(response.headers), await response.json()


def test_an_unexpected_error_is_a_json_500() -> None:
    status, headers, body = asyncio.run(fetch("/fail/bug"))

    assert status == 500
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"]["code"] == "internal_error"  # type: ignore[index]


def test_a_database_error_mid_request_is_a_json_503_with_retry_after() -> None:
    status, headers, body = asyncio.run(fetch("/fail/db"))

    assert (status, headers["Retry-After"]) == (503, "2")
    assert body["error"]["code"] == "database_unavailable"  # type: ignore[index]
