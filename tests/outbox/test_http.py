"""The HTTP kit every intake is built on (``choreo.outbox.http``).

The error middleware around handlers that fail the ways no request provokes on purpose
(a bug, a database error mid-request) is pure; the Idempotency-Key claim runs against
the test stack's PostgreSQL, including two first uses of one key at the same time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import http
from choreo.outbox.wire import OUTBOX_DDL
from choreo.stack.settings import StackSettings
from tests.support import scratch_database

DATABASE = "http_kit"
RUN = uuid.uuid4().hex[:8]
"""The database outlives a run: each run's keys are its own."""


async def failing(request: web.Request) -> web.Response:
    how = request.match_info["how"]
    if how == "bug":
        raise RuntimeError("a bug")
    if how == "invalid":
        raise http.InvalidRequest("items[0].sku", "unknown sku")
    if how == "key":
        http.idempotency_key(request)
    raise psycopg.OperationalError("server closed the connection unexpectedly")


async def fetch(path: str) -> tuple[int, dict[str, str], dict[str, dict[str, str]]]:
    pool = AsyncConnectionPool("postgresql://nowhere.invalid/none", open=False)
    app = http.application("shipping", pool, None, Path("/nonexistent"))  # type: ignore[arg-type]
    app.router.add_get("/fail/{how}", failing)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get(path)
        return response.status, dict(response.headers), await response.json()


def test_an_unexpected_error_is_a_json_500() -> None:
    status, headers, body = asyncio.run(fetch("/fail/bug"))

    assert status == 500
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"]["code"] == "internal_error"
    assert "shipping API" in body["error"]["message"]


def test_a_database_error_mid_request_is_a_json_503_with_retry_after() -> None:
    status, headers, body = asyncio.run(fetch("/fail/db"))

    assert (status, headers["Retry-After"]) == (503, "2")
    assert body["error"]["code"] == "database_unavailable"


def test_an_invalid_request_names_its_field_and_a_missing_key_is_a_400() -> None:
    assert asyncio.run(fetch("/fail/invalid"))[::2] == (422, {"error": {
        "code": "validation_failed", "field": "items[0].sku", "message": "unknown sku"}})
    status, _, body = asyncio.run(fetch("/fail/key"))
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400, "idempotency_key_required", "Idempotency-Key")


def test_an_unknown_route_is_a_json_404() -> None:
    status, _, body = asyncio.run(fetch("/nowhere"))

    assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.fixture(scope="module")
def dsn(running_postgres: StackSettings) -> Iterator[str]:
    dsn = scratch_database(running_postgres, DATABASE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(OUTBOX_DDL.read_text().encode())
        conn.execute("CREATE TABLE IF NOT EXISTS parcels (id serial PRIMARY KEY)")
    yield dsn


async def write(dsn: str, key: str, digest: str, hold_s: float = 0.0) -> tuple[int, bool]:
    """One guarded write: a parcel row and the answer, or the answer the key already has."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        answer = await http.claim(conn, key, digest)
        if answer is None:
            row = await (await conn.execute("INSERT INTO parcels DEFAULT VALUES RETURNING id"
                                            )).fetchone()
            await asyncio.sleep(hold_s)
            answer = await http.remember(conn, key, 201, {"parcel": row[0]})  # type: ignore[index]
    return answer.status, answer.headers.get(http.REPLAYED_HEADER) == "true"


def parcels(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM parcels").fetchone()[0]  # type: ignore[index]


@pytest.mark.postgres
def test_a_retry_gets_the_first_answer_and_writes_nothing(dsn: str) -> None:
    before = parcels(dsn)

    assert asyncio.run(write(dsn, f"k-retry-{RUN}", "a")) == (201, False)
    assert asyncio.run(write(dsn, f"k-retry-{RUN}", "a")) == (201, True)
    assert parcels(dsn) == before + 1


@pytest.mark.postgres
def test_a_key_reused_with_another_request_is_refused(dsn: str) -> None:
    asyncio.run(write(dsn, f"k-reused-{RUN}", "a"))

    assert asyncio.run(write(dsn, f"k-reused-{RUN}", "b")) == (422, False)


@pytest.mark.postgres
def test_two_first_uses_at_once_write_once(dsn: str) -> None:
    """The second waits on the first's uncommitted key, then gets its answer."""
    before = parcels(dsn)

    async def both() -> list[tuple[int, bool]]:
        return list(await asyncio.gather(write(dsn, f"k-race-{RUN}", "a", hold_s=0.5),
                                         write(dsn, f"k-race-{RUN}", "a")))

    assert sorted(asyncio.run(both())) == [(201, False), (201, True)]
    assert parcels(dsn) == before + 1


@pytest.mark.postgres
def test_a_key_whose_write_rolled_back_is_free_again(dsn: str) -> None:
    async def failed() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
            assert await http.claim(conn, f"k-rolled-back-{RUN}", "a") is None
            raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError):
        asyncio.run(failed())
    assert asyncio.run(write(dsn, f"k-rolled-back-{RUN}", "a")) == (201, False)
