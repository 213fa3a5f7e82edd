"""The HTTP intake: place, show and cancel orders.

Every error is JSON with a machine-readable code and, for validation, the field:
``{"error": {"code": "validation_failed", "field": "items[0].quantity", "message": ...}}``.
A request is validated completely before the database is touched, and an order row, its
history and its OrderPlaced event are committed in one transaction, so there is never a
half-written order.

While the database is unreachable every route that needs it answers 503
``database_unavailable`` with ``Retry-After``, after waiting at most ``DB_WAIT_S`` for a
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
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import OutboxWriter, continued_span, current_traceparent
from choreo.services.orders.admission import (
    API_KEY_HEADER,
    SHED,
    Backlog,
    RateLimiter,
    client_of,
    retry_after,
)
from choreo.services.orders.domain import (
    InvalidRequest,
    Status,
    Transition,
    may_cancel,
    parse_order_request,
)
from choreo.services.orders.settings import ApiSettings
from choreo.services.orders.store import (
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
MAX_BODY_BYTES = 64 * 1024
MAX_KEY_LENGTH = 200
DB_WAIT_S = 2.0
"""How long a request waits for a database connection before answering 503: long enough
to ride out a pool refilling after a restart, short enough for a client's timeout."""
RETRY_AFTER_S = 2
OVERLOAD_RETRY_AFTER_S = 5
"""Long enough for the pipeline to settle a few hundred orders (about 80/s on the 2-core
reference box) before a shed client comes back; the backlog is sampled every second."""
log = logging.getLogger("orders")

REQUESTS = Counter("choreo_http_requests_total", "HTTP requests", ["route", "status"])
LATENCY = Histogram("choreo_http_request_seconds", "HTTP request latency", ["route"])
ORDERS = Counter("choreo_orders_placed_total", "Orders accepted", ["replayed"])

POOL = web.AppKey("pool", AsyncConnectionPool)
WRITER = web.AppKey("writer", OutboxWriter)
SETTINGS = web.AppKey("settings", ApiSettings)
LIMITER = web.AppKey("limiter", RateLimiter)
BACKLOG = web.AppKey("backlog", Backlog)


def error(status: int, code: str, message: str, field: str | None = None,
          headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response({"error": body}, status=status, headers=headers)


def database_unavailable() -> web.Response:
    return error(503, "database_unavailable",
                 "the order database is unreachable; retry later (the same Idempotency-Key"
                 " is safe)", headers={"Retry-After": str(RETRY_AFTER_S)})


@web.middleware
async def observe(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    """Metrics, and JSON errors for whatever aiohttp itself rejects (404, 405, 413), for an
    unreachable database (503) and for anything unexpected (500), never aiohttp's HTML page.
    The server span around it (continuing a caller's traceparent) is the aiohttp-server
    instrumentation's, installed by ``outbox.telemetry``."""
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unmatched"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason,
                         headers=allow)
    except psycopg.OperationalError as exc:  # PoolTimeout is one too
        log.warning("database unavailable: %s", exc)
        response = database_unavailable()
    except Exception:
        log.exception("unexpected error")
        response = error(500, "internal_error", "unexpected error in the orders API;"
                         " retrying with the same Idempotency-Key is safe")
    LATENCY.labels(route).observe(time.perf_counter() - started)
    REQUESTS.labels(route, str(response.status)).inc()
    return response


async def read_json(request: web.Request) -> object:
    if request.content_type != "application/json":
        raise InvalidRequest("Content-Type", "must be application/json")
    raw = await request.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest("$", f"not valid JSON: {exc}") from None


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
        return error(503, "overloaded",
                     f"at least {backlog.pending} orders are in progress; nothing was written,"
                     " retry after Retry-After seconds with the same Idempotency-Key",
                     headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)})
    limiter = request.app.get(LIMITER)
    if limiter is not None:
        wait_s = limiter.acquire(client_of(request.headers, customer_id))
        if wait_s > 0:
            SHED.labels("rate_limited").inc()
            return error(429, "rate_limited",
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
        return error(422, "idempotency_key_reused",
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
        async with request.app[POOL].connection(DB_WAIT_S) as conn:
            existing = await (await conn.execute(FIND_BY_KEY, (key,))).fetchone()
    except psycopg.Error:
        return refused
    return answer_to_a_retry(existing, fingerprint) or refused


async def place_order(request: web.Request) -> web.Response:
    key = request.headers.get("Idempotency-Key", "")
    if not key or len(key) > MAX_KEY_LENGTH:
        return error(400, "idempotency_key_required",
                     f"send an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters",
                     "Idempotency-Key")
    if request.headers.get(API_KEY_HEADER) == "":  # every header checked, replay or not
        return error(400, "validation_failed", f"{API_KEY_HEADER}, when sent, must not be"
                     " empty", API_KEY_HEADER)
    try:
        order = parse_order_request(await read_json(request),
                                    request.app[SETTINGS].reservation_ttl_s)
    except InvalidRequest as exc:
        status = 400 if exc.field in ("$", "Content-Type") else 422
        return error(status, "validation_failed", exc.message, exc.field)
    fingerprint = order.fingerprint()
    if (refused := refusal(request, order.customer_id)) is not None:
        return await retried_or(request, key, fingerprint, refused)
    order_id = uuid.uuid4()
    writer = request.app[WRITER]
    async with request.app[POOL].connection(DB_WAIT_S) as conn, conn.transaction():
        row = await (await conn.execute(INSERT_ORDER, (
            order_id, key, fingerprint, order.customer_id, json.dumps(order.items_json()),
            order.payment_token, order.deadline_s or request.app[SETTINGS].deadline_s,
            current_traceparent()))).fetchone()
        if row is None:
            existing = await (await conn.execute(FIND_BY_KEY, (key,))).fetchone()
            return answer_to_a_retry(existing, fingerprint) or error(
                500, "internal_error", "the order's Idempotency-Key vanished", "Idempotency-Key")
        payload = {"order_id": str(order_id), "customer_id": order.customer_id,
                   "items": order.items_json(), "payment_token": order.payment_token,
                   "deadline_at": row[1].isoformat()}
        with event_statements(writer, order_id, "OrderPlaced", payload) as statements:
            for statement in statements:
                await conn.execute(*statement)
    ORDERS.labels("false").inc()
    return accepted(order_id, Status.PENDING, row[1], replayed=False)


async def show_order(request: web.Request) -> web.Response:
    order_id = parse_order_id(request.match_info["order_id"])
    if order_id is None:
        return error(404, "not_found", "no such order", "order_id")
    async with request.app[POOL].connection(DB_WAIT_S) as conn, \
            conn.cursor(row_factory=dict_row) as cur:
        order = await (await cur.execute(GET_ORDER, (order_id,))).fetchone()
        if order is None:
            return error(404, "not_found", "no such order", "order_id")
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
        return error(404, "not_found", "no such order", "order_id")
    writer = request.app[WRITER]
    async with request.app[POOL].connection(DB_WAIT_S) as conn, conn.transaction():
        row = await (await conn.execute(LOCK_ORDER, (order_id,))).fetchone()
        if row is None:
            return error(404, "not_found", "no such order", "order_id")
        if not may_cancel(Status(row[0])):
            return error(409, "not_cancellable", f"the order is already {row[0]}")
        cancel = Transition.cancel(str(order_id), "customer")
        with (continued_span("customer cancels order", row[1], trace.SpanKind.INTERNAL),
              transition_statements(writer, order_id, cancel) as statements):
            for statement in statements:
                await conn.execute(*statement)
    return web.json_response({"id": str(order_id), "status": Status.CANCELLED,
                              "status_url": f"/orders/{order_id}"}, status=202)


async def health(request: web.Request) -> web.Response:
    try:
        async with request.app[POOL].connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, said in the body
        return web.json_response({"status": "unavailable", "database": str(exc)}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")


def create_app(pool: AsyncConnectionPool, writer: OutboxWriter, settings: ApiSettings
               ) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[observe])
    app[POOL], app[WRITER], app[SETTINGS] = pool, writer, settings
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
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app
