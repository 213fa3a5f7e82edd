"""The users API: register a customer, change preferences, block or unblock.

Each change commits its row, its outbox event and its Idempotency-Key in one
transaction (``choreo.outbox.http``): a retry with the same key gets the first answer
and writes nothing, a key reused with another request is 422. Errors are JSON naming
the field, as the orders intake's are.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import OutboxWriter, http
from choreo.services.users.domain import (
    parse_preferences,
    parse_registration,
    parse_status,
    reachable,
)
from choreo.services.users.store import (
    GET_CUSTOMER,
    INSERT_CUSTOMER,
    LOCK_CUSTOMER,
    SET_PREFERENCES,
    SET_STATUS,
)

OPENAPI = Path(__file__).resolve().parent / "openapi.json"


NOT_FOUND = {"error": {"code": "not_found", "message": "no such customer",
                       "field": "customer_id"}}


async def register(request: web.Request) -> web.Response:
    key = http.idempotency_key(request)
    body = await http.read_json(request)
    registration = parse_registration(body)
    customer_id = str(uuid.uuid4())
    preferences = registration.preferences
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn, conn.transaction():
        if (answer := await http.claim(conn, key, http.fingerprint("register", body))):
            return answer
        await conn.execute(INSERT_CUSTOMER, (
            customer_id, registration.name, registration.email, registration.phone,
            preferences.channel, preferences.address, preferences.marketing_allowed))
        with request.app[http.WRITER].writing("CustomerRegistered", customer_id, {
                "customer_id": customer_id, "name": registration.name,
                "email": registration.email, "phone": registration.phone,
                "preferences": preferences.event()}) as row:
            await conn.execute(*row.statement)
        return await http.remember(conn, key, 201, {
            "id": customer_id, "status_url": f"/customers/{customer_id}"})


async def show(request: web.Request) -> web.Response:
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn, \
            conn.cursor(row_factory=dict_row) as cur:
        customer = await (await cur.execute(GET_CUSTOMER, (request.match_info["customer_id"],)
                                            )).fetchone()
    if customer is None:
        return web.json_response(NOT_FOUND, status=404)
    return web.json_response({
        "id": customer["id"], "name": customer["name"], "email": customer["email"],
        "phone": customer["phone"],
        "preferences": {"channel": customer["channel"], "address": customer["address"],
                        "marketing_allowed": customer["marketing_allowed"]},
        "blocked": customer["blocked"], "block_reason": customer["block_reason"],
        "created_at": customer["created_at"].isoformat(),
        "updated_at": customer["updated_at"].isoformat()})


async def change(request: web.Request, kind: str, body: Any,
                 apply: Any) -> web.Response:
    """The one shape of every change to an existing customer: claim the key, lock the
    row (404 if there is none), ``apply`` it (the statement and the event), remember."""
    key = http.idempotency_key(request)
    customer_id = request.match_info["customer_id"]
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn, conn.transaction():
        if (answer := await http.claim(conn, key, http.fingerprint(kind, customer_id, body))):
            return answer
        contact = await (await conn.execute(LOCK_CUSTOMER, (customer_id,))).fetchone()
        if contact is None:  # ids are the service's own: an unknown one stays unknown
            return await http.remember(conn, key, 404, NOT_FOUND)
        statement, event_type, payload = apply(customer_id, *contact)
        await conn.execute(*statement)
        with request.app[http.WRITER].writing(event_type, customer_id, payload) as row:
            await conn.execute(*row.statement)
        return await http.remember(conn, key, 200, {
            "id": customer_id, "status_url": f"/customers/{customer_id}"})


async def change_preferences(request: web.Request) -> web.Response:
    body = await http.read_json(request)
    preferences = parse_preferences(body)

    def apply(customer_id: str, email: str | None, phone: str | None) -> Any:
        reachable(preferences, email, phone, "channel")
        return ((SET_PREFERENCES, (preferences.channel, preferences.address,
                                   preferences.marketing_allowed, customer_id)),
                "PreferencesChanged",
                {"customer_id": customer_id, "preferences": preferences.event()})

    return await change(request, "preferences", body, apply)


async def change_status(request: web.Request) -> web.Response:
    body = await http.read_json(request)
    blocked, reason = parse_status(body)

    def apply(customer_id: str, email: str | None, phone: str | None) -> Any:
        return ((SET_STATUS, (blocked, reason, customer_id)), "CustomerStatusChanged",
                {"customer_id": customer_id, "blocked": blocked, "reason": reason})

    return await change(request, "status", body, apply)


def create_app(pool: AsyncConnectionPool, writer: OutboxWriter) -> web.Application:
    app = http.application("users", pool, writer, OPENAPI)
    app.router.add_post("/customers", register)
    app.router.add_get("/customers/{customer_id}", show)
    app.router.add_put("/customers/{customer_id}/preferences", change_preferences)
    app.router.add_put("/customers/{customer_id}/status", change_status)
    return app
