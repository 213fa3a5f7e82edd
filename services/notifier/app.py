"""The notifier's HTTP API: send a message (idempotent per key), list them per reference."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import OutboxWriter, http
from choreo.services.notifier.recipients import Behaviour, behaviour_of

OPENAPI = Path(__file__).resolve().parent / "openapi.json"
SLOW_DELAY = web.AppKey("slow_delay_s", float)
CHANNELS = ("email", "sms")
MAX_TEXT = 2000

COUNT_ATTEMPT = """
INSERT INTO attempts (idempotency_key, attempts) VALUES (%s, 1)
ON CONFLICT (idempotency_key) DO UPDATE SET attempts = attempts.attempts + 1
RETURNING attempts
"""
SENT_BEFORE = """
UPDATE messages SET requests = requests + 1 WHERE idempotency_key = %s RETURNING id
"""
SEND = """
INSERT INTO messages (idempotency_key, channel, recipient, reference, subject, body)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (idempotency_key) DO UPDATE SET requests = messages.requests + 1
RETURNING id
"""
KEYS_ABOUT = """
SELECT reference, idempotency_key, requests FROM messages WHERE reference = ANY(%s)
"""
"""Every message about any of the references: one row per message a customer received,
with how often it was asked for (a re-send with the same key adds a request, not a
message)."""
BY_REFERENCE = """
SELECT id, idempotency_key, channel, recipient, reference, subject, requests, created_at
FROM messages WHERE reference = %s ORDER BY id
"""


def message_of(body: object) -> dict[str, str]:
    fields = ("channel", "to", "reference", "subject", "body")
    if not isinstance(body, dict) or set(body) != set(fields):
        raise http.InvalidRequest("$", f"expected exactly {', '.join(fields)}")
    for field in fields:
        value = body[field]
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
            raise http.InvalidRequest(field, f"a non-empty string of at most {MAX_TEXT}")
    if body["channel"] not in CHANNELS:
        raise http.InvalidRequest("channel", f"one of {', '.join(CHANNELS)}")
    return body


async def send(request: web.Request) -> web.Response:
    key = http.idempotency_key(request)
    message = message_of(await http.read_json(request))
    behaviour = behaviour_of(message["to"])
    pool = request.app[http.POOL]
    async with pool.connection(http.DB_WAIT_S) as conn:
        attempt = (await (await conn.execute(COUNT_ATTEMPT, (key,))).fetchone())[0]  # type: ignore[index]
        again = await (await conn.execute(SENT_BEFORE, (key,))).fetchone()
    if again is not None:
        return web.json_response({"id": again[0], "replayed": True}, status=200)
    if behaviour is Behaviour.FAIL or (behaviour is Behaviour.FLAKY and attempt == 1):
        status = 500 if behaviour is Behaviour.FAIL else 503
        return http.error(status, "provider_error", f"{message['to']}: not sent")
    if behaviour is Behaviour.SLOW:
        await asyncio.sleep(request.app[SLOW_DELAY])
    async with pool.connection(http.DB_WAIT_S) as conn:
        row = await (await conn.execute(SEND, (
            key, message["channel"], message["to"], message["reference"], message["subject"],
            message["body"]))).fetchone()
    return web.json_response({"id": row[0], "replayed": False}, status=201)  # type: ignore[index]


async def by_reference(request: web.Request) -> web.Response:
    reference = request.query.get("reference", "")
    if not reference:
        raise http.InvalidRequest("reference", "required, the order the messages are about")
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn, \
            conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = await (await cur.execute(BY_REFERENCE, (reference,)
                                                              )).fetchall()
    return web.json_response([{**row, "created_at": row["created_at"].isoformat()}
                              for row in rows])


def create_app(pool: AsyncConnectionPool, writer: OutboxWriter, slow_delay_s: float
               ) -> web.Application:
    app = http.application("notifier", pool, writer, OPENAPI)
    app[SLOW_DELAY] = slow_delay_s
    app.router.add_post("/messages", send)
    app.router.add_get("/messages", by_reference)
    return app
