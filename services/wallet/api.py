"""The wallet API: top up a customer's balance, show a wallet.

A top-up commits its balance change, its entry and its Idempotency-Key in one
transaction (``choreo.outbox.http``): a retry gets the first answer and adds nothing.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import OutboxWriter, http
from choreo.services.wallet.store import CREATE_WALLETS, CREDIT, ENTRY, SHOW

OPENAPI = Path(__file__).resolve().parent / "openapi.json"
MAX_TOPUP_CENTS = 100_000_00
MAX_CUSTOMER_ID = 100


def customer_of(request: web.Request) -> str:
    customer = request.match_info["customer_id"]
    if len(customer) > MAX_CUSTOMER_ID or "\x00" in customer:
        raise http.InvalidRequest("customer_id", f"at most {MAX_CUSTOMER_ID} characters")
    return customer


def amount_of(body: object) -> int:
    if not isinstance(body, dict) or set(body) != {"amount_cents"}:
        raise http.InvalidRequest("$", "expected exactly {\"amount_cents\": N}")
    amount = body["amount_cents"]
    if not isinstance(amount, int) or isinstance(amount, bool) \
            or not 1 <= amount <= MAX_TOPUP_CENTS:
        raise http.InvalidRequest("amount_cents", f"a whole number of cents, 1 to"
                                                  f" {MAX_TOPUP_CENTS}")
    return amount


async def top_up(request: web.Request) -> web.Response:
    key = http.idempotency_key(request)
    customer = customer_of(request)
    body = await http.read_json(request)
    amount = amount_of(body)
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn, conn.transaction():
        if (answer := await http.claim(conn, key, http.fingerprint("topup", customer, body))):
            return answer
        await conn.execute(CREATE_WALLETS, ([customer],))
        row = await (await conn.execute(CREDIT, {"customer": customer, "amount": amount}
                                        )).fetchone()
        await conn.execute(ENTRY, (customer, "topup", None, amount))
        return await http.remember(conn, key, 201, {
            "customer_id": customer, "topped_up_cents": amount,
            "balance_cents": row[0]})  # type: ignore[index]


async def show(request: web.Request) -> web.Response:
    customer = customer_of(request)
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn:
        row = await (await conn.execute(SHOW, (customer,))).fetchone()
    if row is None:
        return http.error(404, "not_found", "no wallet for this customer yet", "customer_id")
    return web.json_response({"customer_id": customer, "balance_cents": row[0],
                              "points": row[1], "updated_at": row[2].isoformat()})


def create_app(pool: AsyncConnectionPool, writer: OutboxWriter) -> web.Application:
    app = http.application("wallet", pool, writer, OPENAPI)
    app.router.add_post("/wallets/{customer_id}/topups", top_up)
    app.router.add_get("/wallets/{customer_id}", show)
    return app
