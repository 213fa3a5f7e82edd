"""The HTTP intake: place, show and cancel orders.

Every error is JSON with a machine-readable code and, for validation, the field:
``{"error": {"code": "validation_failed", "field": "items[0].quantity", "message": ...}}``.
A request is validated completely before the database is touched, and an order row, its
history and its OrderPlaced event are committed in one transaction, so there is never a
half-written order.

While the database is unreachable every route that needs it answers 503
``database_unavailable`` with ``Retry-After``, after waiting at most ``http.DB_WAIT_S`` for a
connection; the pool keeps trying to reconnect, so service resumes by itself once the
database is back. A 503 to ``POST /orders`` may come after the commit was sent: retrying
with the same Idempotency-Key is always safe. Anything else unexpected is a JSON 500.

A valid order can still be refused before anything is written (``admission``): 429
``rate_limited`` when its client is past the configured rate, 503 ``overloaded`` while
too many orders are PENDING. Both carry ``Retry-After``, and neither uses the
Idempotency-Key, so the same request later is a first try.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from opentelemetry import trace
from prometheus_client import Counter
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import OutboxWriter, continued_span, current_traceparent, http
from choreo.services.orders.admission import (
    API_KEY_HEADER,
    SHED,
    Backlog,
    RateLimiter,
    client_of,
    retry_after,
)
from choreo.services.orders.domain import (
    Status,
    Transition,
    may_cancel,
    parse_order_request,
)
from choreo.services.orders.settings import ApiSettings
from choreo.services.orders.store import (
    BLOCKED_REASON,
    FIND_BY_KEY,
    GET_HISTORY,
    GET_ORDER,
    INSERT_ORDER,
    LOCK_ORDER,
    event_statements,
    parse_order_id,
    transition_statements,
)

OPENAPI = Path(__file__).resolve().parent / "openapi.json"
OVERLOAD_RETRY_AFTER_S = 5
"""Long enough for the pipeline to settle a few hundred orders (about 80/s on the 2-core
reference box) before a shed client comes back; the backlog is sampled every second."""
log = logging.getLogger("orders")

ORDERS = Counter("choreo_orders_placed_total", "Orders accepted", ["replayed"])

SETTINGS = web.AppKey("settings", ApiSettings)
LIMITER = web.AppKey("limiter", RateLimiter)
BACKLOG = web.AppKey("backlog", Backlog)


def accepted(order_id: uuid.UUID, status: str, deadline_at: Any, replayed: bool
             ) -> web.Response:
    location = f"/orders/{order_id}"
    return web.json_response(
        {"id": str(order_id), "status": status, "status_url": location,
         "deadline_at": deadline_at.isoformat(), "replayed": replayed},
        status=202, headers={"Location": location},
    )


def refusal(request: web.Request, customer_id: str) -> web.Response | None:
    """503 while the pipeline is overloaded, else 429 past the client's rate, else None.

    Shedding comes first: a client turned away for the system's sake keeps its tokens.
    """
    backlog = request.app.get(BACKLOG)
    if backlog is not None and backlog.overloaded():
        SHED.labels("overloaded").inc()
        return http.error(503, "overloaded",
                     f"at least {backlog.pending} orders are in progress; nothing was written,"
                     " retry after Retry-After seconds with the same Idempotency-Key",
                     headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)})
    limiter = request.app.get(LIMITER)
    if limiter is not None:
        wait_s = limiter.acquire(request.get(http.CALLER) or client_of(request.headers,
                                                                        customer_id))
        if wait_s > 0:
            SHED.labels("rate_limited").inc()
            return http.error(429, "rate_limited",
                         f"more than {limiter.rate_per_s:g} orders/s (burst"
                         f" {limiter.burst}) from this client; nothing was written, retry"
                         " after Retry-After seconds with the same Idempotency-Key",
                         headers={"Retry-After": retry_after(wait_s)})
    return None


def answer_to_a_retry(existing: tuple[Any, ...] | None, fingerprint: str
                      ) -> web.Response | None:
    """What a request whose Idempotency-Key is already taken gets: the stored order, or
    422 when the key came with another request; None when the key is new."""
    if existing is None:
        return None
    if existing[1] != fingerprint:
        return http.error(422, "idempotency_key_reused",
                     "this Idempotency-Key was used with a different request",
                     "Idempotency-Key")
    ORDERS.labels("true").inc()
    return accepted(existing[0], existing[3], existing[2], replayed=True)


async def retried_or(request: web.Request, key: str, fingerprint: str,
                     refused: web.Response) -> web.Response:
    """A refusal is for new orders: the retry of one already committed (its first 202
    lost, say) is answered as the replay it is, overloaded or not. Only refusals pay
    for the look-up, and a database that does not answer it leaves the refusal as it
    was: refusing is what protects the database."""
    try:
        async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn:
            existing = await (await conn.execute(FIND_BY_KEY, (key,))).fetchone()
    except psycopg.Error:
        return refused
    return answer_to_a_retry(existing, fingerprint) or refused


async def place_order(request: web.Request) -> web.Response:
    key = http.idempotency_key(request)
    if request.headers.get(API_KEY_HEADER) == "":  # every header checked, replay or not
        return http.error(400, "validation_failed", f"{API_KEY_HEADER}, when sent, must not be"
                     " empty", API_KEY_HEADER)
    order = parse_order_request(await http.read_json(request),
                                request.app[SETTINGS].reservation_ttl_s)
    fingerprint = order.fingerprint()
    if (refused := refusal(request, order.customer_id)) is not None:
        return await retried_or(request, key, fingerprint, refused)
    order_id = uuid.uuid4()
    writer = request.app[http.WRITER]
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn, conn.transaction():
        row = await (await conn.execute(INSERT_ORDER, (
            order_id, key, fingerprint, order.customer_id, json.dumps(order.items_json()),
            order.payment_token, order.payment_method,
            order.deadline_s or request.app[SETTINGS].deadline_s,
            current_traceparent()))).fetchone()
        if row is None:
            existing = await (await conn.execute(FIND_BY_KEY, (key,))).fetchone()
            return answer_to_a_retry(existing, fingerprint) or http.error(
                500, "internal_error", "the order's Idempotency-Key vanished", "Idempotency-Key")
        blocked = await (await conn.execute(BLOCKED_REASON, (order.customer_id,))).fetchone()
        if blocked is not None:  # raised: the order's row rolls back with the transaction
            raise http.InvalidRequest("customer_id", f"the customer is blocked: {blocked[0]}",
                                      "customer_blocked")
        payload = {"order_id": str(order_id), "customer_id": order.customer_id,
                   "items": order.items_json(), "payment_token": order.payment_token,
                   "payment_method": order.payment_method,
                   "deadline_at": row[1].isoformat()}
        with event_statements(writer, order_id, "OrderPlaced", payload) as statements:
            for statement in statements:
                await conn.execute(*statement)
    ORDERS.labels("false").inc()
    return accepted(order_id, Status.PENDING, row[1], replayed=False)


async def show_order(request: web.Request) -> web.Response:
    order_id = parse_order_id(request.match_info["order_id"])
    if order_id is None:
        return http.error(404, "not_found", "no such order", "order_id")
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn, \
            conn.cursor(row_factory=dict_row) as cur:
        order = await (await cur.execute(GET_ORDER, (order_id,))).fetchone()
        if order is None:
            return http.error(404, "not_found", "no such order", "order_id")
        history = await (await cur.execute(GET_HISTORY, (order_id,))).fetchall()
    return web.json_response({
        "id": str(order["id"]), "status": order["status"], "reason": order["reason"],
        "customer_id": order["customer_id"], "items": order["items"],
        "total_cents": order["total_cents"], "deadline_at": order["deadline_at"].isoformat(),
        "created_at": order["created_at"].isoformat(),
        "updated_at": order["updated_at"].isoformat(),
        "history": [{"event_type": h["event_type"], "event_id": str(h["event_id"]),
                     "source": h["source"], "detail": h["detail"],
                     "seen_at": h["seen_at"].isoformat()} for h in history],
    })


async def cancel_order(request: web.Request) -> web.Response:
    order_id = parse_order_id(request.match_info["order_id"])
    if order_id is None:
        return http.error(404, "not_found", "no such order", "order_id")
    writer = request.app[http.WRITER]
    async with request.app[http.POOL].connection(http.DB_WAIT_S) as conn, conn.transaction():
        row = await (await conn.execute(LOCK_ORDER, (order_id,))).fetchone()
        if row is None:
            return http.error(404, "not_found", "no such order", "order_id")
        if not may_cancel(Status(row[0])):
            return http.error(409, "not_cancellable", f"the order is already {row[0]}")
        cancel = Transition.cancel(str(order_id), "customer")
        with (continued_span("customer cancels order", row[1], trace.SpanKind.INTERNAL),
              transition_statements(writer, order_id, cancel) as statements):
            for statement in statements:
                await conn.execute(*statement)
    return web.json_response({"id": str(order_id), "status": Status.CANCELLED,
                              "status_url": f"/orders/{order_id}"}, status=202)


def create_app(pool: AsyncConnectionPool, writer: OutboxWriter, settings: ApiSettings
               ) -> web.Application:
    app = http.application("orders", pool, writer, OPENAPI)
    app[SETTINGS] = settings
    if settings.rate_limit_per_s > 0:
        app[LIMITER] = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst,
                                   settings.rate_limit_clients)
    if settings.max_pending > 0:
        backlog = app[BACKLOG] = Backlog(settings.max_pending, settings.pending_sample_s)

        async def sampling(app: web.Application) -> AsyncIterator[None]:
            async with backlog.running(pool):
                yield

        app.cleanup_ctx.append(sampling)
    app.router.add_post("/orders", place_order)
    app.router.add_get("/orders/{order_id}", show_order)
    app.router.add_post("/orders/{order_id}/cancel", cancel_order)
    return app
