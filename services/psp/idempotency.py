"""Run a request at most once per idempotency key, with Stripe's semantics.

One transaction per request does everything: take the key's lock, look up what was
answered before, run the operation, store its answer. Because the claim, the
capture and the stored answer commit together, there is no moment at which a
capture exists without its key, or a key says "done" without its capture:

* the key is new, or its last run failed transiently: run, store the answer;
* the same body was answered before: replay that answer byte for byte, run nothing;
* a different body used the key: 422 ``idempotency_error``;
* another request holds the key right now: 409, without waiting.

"In flight" is a transaction-scoped advisory lock rather than a committed row, so a
psp crash mid-request releases the key with the aborted transaction and the caller's
retry simply runs again (see schema.sql).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from choreo.services.psp.errors import ApiResponse, error_response
from choreo.services.psp.payloads import ChargeRequest, RefundRequest

Operation = Callable[[AsyncConnection[Any], int], Awaitable[ApiResponse]]
"""Does the work inside the key's transaction; gets the attempt number, starting at 1."""


class Disposition(Enum):
    EXECUTED = "executed"
    REPLAYED = "replayed"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class Outcome:
    response: ApiResponse
    disposition: Disposition


@dataclass(frozen=True)
class StoredKey:
    request_hash: str
    state: str
    attempts: int
    response_status: int
    response_body: str


def request_hash(endpoint: str, request: ChargeRequest | RefundRequest) -> str:
    """Of the validated request, so whitespace or field order in the JSON do not matter.

    The endpoint is part of it: a charge's key reused for a refund is a mismatch.
    """
    canonical = json.dumps({"endpoint": endpoint, **asdict(request)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def run_once(pool: AsyncConnectionPool[Any], key: str, digest: str,
                   operation: Operation) -> Outcome:
    async with pool.connection() as conn, conn.transaction():
        if not await _try_lock(conn, key):
            return Outcome(_in_flight(), Disposition.IN_FLIGHT)
        stored = await _load(conn, key)
        if stored is not None and stored.request_hash != digest:
            return Outcome(_mismatch(), Disposition.MISMATCH)
        if stored is not None and stored.state == "done":
            return Outcome(ApiResponse(stored.response_status, stored.response_body),
                           Disposition.REPLAYED)
        attempt = 1 if stored is None else stored.attempts + 1
        response = await operation(conn, attempt)
        await _store(conn, key, digest, attempt, response)
        return Outcome(response, Disposition.EXECUTED)


async def _try_lock(conn: AsyncConnection[Any], key: str) -> bool:
    """Held until the transaction ends, however it ends (commit, rollback, lost connection).

    Keyed by a 64-bit hash: two keys that collide only cost one of them a spurious 409.
    """
    cursor = await conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
    row = await cursor.fetchone()
    return row is not None and bool(row[0])


async def _load(conn: AsyncConnection[Any], key: str) -> StoredKey | None:
    cursor = await conn.execute(
        "SELECT request_hash, state, attempts, response_status, response_body"
        " FROM idempotency_keys WHERE key = %s", (key,))
    row = await cursor.fetchone()
    return None if row is None else StoredKey(*row)


async def _store(conn: AsyncConnection[Any], key: str, digest: str, attempt: int,
                 response: ApiResponse) -> None:
    await conn.execute(
        """
        INSERT INTO idempotency_keys
            (key, request_hash, state, attempts, response_status, response_body)
        VALUES (%(key)s, %(hash)s, %(state)s, %(attempts)s, %(status)s, %(body)s)
        ON CONFLICT (key) DO UPDATE SET
            state = excluded.state, attempts = excluded.attempts,
            response_status = excluded.response_status, response_body = excluded.response_body,
            updated_at = clock_timestamp()
        """,
        {"key": key, "hash": digest, "state": "done" if response.final else "retryable",
         "attempts": attempt, "status": response.status, "body": response.body},
    )


def _in_flight() -> ApiResponse:
    return error_response(409, "idempotency_error", "request_in_progress",
                          "a request with this Idempotency-Key is still being processed;"
                          " retry later with the same key")


def _mismatch() -> ApiResponse:
    return error_response(422, "idempotency_error", "idempotency_key_reused",
                          "this Idempotency-Key was used with a different request;"
                          " use a new key for a new request")
