"""The psp's HTTP API: routes, handlers, and the middleware every request passes.

Handlers only translate: HTTP in, a validated request to ``idempotency.run_once`` or
the ledger, JSON out. The middleware guarantees the edge contract: every answer is
JSON, bad input is a 4xx, an unreachable database is a 503 the caller may retry, and
only a genuine bug is a 500. It also writes the one log line and the latency sample
each request gets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from choreo.outbox.tracing import trace_id_of
from choreo.services.psp import idempotency, ledger, operations, payloads
from choreo.services.psp.errors import ApiError, ApiResponse, error_response, not_found
from choreo.services.psp.idempotency import Disposition, Outcome
from choreo.services.psp.metrics import PspMetrics
from choreo.services.psp.outage import LOOPBACK, OutageSwitch
from choreo.services.psp.settings import PspSettings

log = logging.getLogger("psp")

SETTINGS = web.AppKey("settings", PspSettings)
METRICS = web.AppKey("metrics", PspMetrics)
POOL = web.AppKey("pool", AsyncConnectionPool)
OUTAGE = web.AppKey("outage", OutageSwitch)
LOG_FIELDS = "log_fields"
"""Request-scoped fields a handler adds to the request's log line."""

MAX_BODY_BYTES = 64 * 1024
POOL_SIZE = 20
"""Enough for concurrent tok_slow requests, each holding a connection while it waits."""
POOL_TIMEOUT_S = 10.0
QUIET_PATHS = frozenset({"/health", "/metrics"})


def create_app(settings: PspSettings) -> web.Application:
    app = web.Application(middlewares=[edge], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[METRICS] = PspMetrics()
    app[OUTAGE] = OutageSwitch()
    app.cleanup_ctx.append(database)
    app.add_routes([
        web.post("/v1/charges", create_charge),
        web.get("/v1/charges", list_charges),
        web.get("/v1/charges/{id}", get_charge),
        web.post("/v1/refunds", create_refund),
        web.get("/v1/ledger/summary", ledger_summary),
        web.get("/health", health),
        web.get("/metrics", metrics),
        web.post("/admin/outage", start_outage),
        web.delete("/admin/outage", end_outage),
    ])
    return app


async def database(app: web.Application) -> AsyncIterator[None]:
    """Open the pool and apply the schema before the first request; close it last."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        app[SETTINGS].database_url, min_size=2, max_size=POOL_SIZE, open=False,
        timeout=POOL_TIMEOUT_S, kwargs={"autocommit": True},
        # A connection broken by a PostgreSQL restart is replaced rather than handed out.
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=POOL_TIMEOUT_S)
    try:
        async with pool.connection() as conn:
            await ledger.apply_schema(conn)
        app[POOL] = pool
        yield
    finally:
        await pool.close()


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request[LOG_FIELDS] = {}
    try:
        response = await handler(request)
    except ApiError as error:
        response = error.response.to_web()
    except web.HTTPException as error:  # unknown route, wrong method, body too large
        code = error.reason.lower().replace(" ", "_")
        response = error_response(error.status, "invalid_request_error", code,
                                  error.reason).to_web()
    except (PoolTimeout, psycopg.OperationalError):
        log.warning("ledger database unavailable", exc_info=True)
        response = error_response(503, "api_error", "ledger_unavailable",
                                  "the ledger is unavailable; retry with the same key").to_web()
    except Exception:
        log.exception("unexpected error")
        response = error_response(
            500, "api_error", "internal_error",
            "unexpected error in the psp; a retry with the same Idempotency-Key is safe",
        ).to_web()
    elapsed = time.perf_counter() - started
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    request.app[METRICS].latency.labels(request.method, route, str(response.status)).observe(
        elapsed)
    if request.path not in QUIET_PATHS:
        fields = {"method": request.method, "route": route, "status": response.status,
                  "duration_ms": round(elapsed * 1000, 1), **request[LOG_FIELDS]}
        log.info("request", extra={**fields,
                                   "trace_id": trace_id_of(request.headers.get("traceparent"))})
    return response


async def create_charge(request: web.Request) -> web.Response:
    key = payloads.idempotency_key(request.headers.get("Idempotency-Key"))
    charge = payloads.charge_request(payloads.json_object(await request.read()))
    request[LOG_FIELDS].update(idempotency_key=key, order_id=charge.reference, token=charge.token)
    refused = await request.app[OUTAGE].interfere()
    if refused is not None:
        return refused.to_web()
    slow_delay_s = request.app[SETTINGS].slow_delay_s
    outcome = await idempotency.run_once(
        request.app[POOL], key, idempotency.request_hash("POST /v1/charges", charge),
        lambda conn, attempt: operations.charge(conn, key, charge, attempt, slow_delay_s),
    )
    if outcome.disposition is Disposition.EXECUTED:
        metrics = request.app[METRICS]
        if outcome.response.status == 201:
            metrics.captures.inc()
            metrics.captured_cents.inc(charge.amount_cents)
            request[LOG_FIELDS]["charge_id"] = outcome.response.payload()["id"]
        elif outcome.response.status == 402:
            metrics.declines.labels(outcome.response.payload()["error"]["code"]).inc()
    return _answer(request, "charges", outcome)


async def create_refund(request: web.Request) -> web.Response:
    key = payloads.idempotency_key(request.headers.get("Idempotency-Key"))
    refund = payloads.refund_request(payloads.json_object(await request.read()))
    request[LOG_FIELDS].update(idempotency_key=key, charge_id=refund.charge_id)
    refused = await request.app[OUTAGE].interfere()
    if refused is not None:
        return refused.to_web()
    outcome = await idempotency.run_once(
        request.app[POOL], key, idempotency.request_hash("POST /v1/refunds", refund),
        lambda conn, _attempt: operations.refund(conn, key, refund),
    )
    if outcome.disposition is Disposition.EXECUTED and outcome.response.status == 201:
        metrics = request.app[METRICS]
        metrics.refunds.inc()
        metrics.refunded_cents.inc(outcome.response.payload()["amount_cents"])
    return _answer(request, "refunds", outcome)


def _answer(request: web.Request, endpoint: str, outcome: Outcome) -> web.Response:
    replayed = outcome.disposition is Disposition.REPLAYED
    if replayed:
        request.app[METRICS].replays.labels(endpoint).inc()
    request[LOG_FIELDS]["idempotency"] = outcome.disposition.value
    return outcome.response.to_web(replayed=replayed)


async def get_charge(request: web.Request) -> web.Response:
    charge_id = payloads.path_id(request.match_info["id"])
    async with request.app[POOL].connection() as conn:
        charge = await ledger.find_charge(conn, charge_id)
    if charge is None:
        return not_found("charge").to_web()
    return ApiResponse.of(200, charge.as_json()).to_web()


async def list_charges(request: web.Request) -> web.Response:
    reference = payloads.charge_reference(request.query.get("reference"))
    async with request.app[POOL].connection() as conn:
        charges = await ledger.charges_with_reference(conn, reference)
    return ApiResponse.of(200, {"data": [c.as_json() for c in charges]}).to_web()


async def ledger_summary(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        totals = await ledger.summary(conn)
    return ApiResponse.of(200, totals.as_json()).to_web()


async def health(request: web.Request) -> web.Response:
    """Healthy means the ledger answers too: a psp that cannot record must not look up."""
    async with request.app[POOL].connection() as conn:
        await conn.execute("SELECT 1")
    outage = request.app[OUTAGE].current
    return ApiResponse.of(200, {"status": "ok", **({"outage": outage.as_json()} if outage
                                                   else {})}).to_web()


def _from_loopback(request: web.Request) -> None:
    if request.remote not in LOOPBACK:
        raise ApiError(error_response(403, "invalid_request_error", "forbidden",
                                      "the outage switch answers on the loopback interface only"))


async def start_outage(request: web.Request) -> web.Response:
    """Fail or slow down every charge and refund for a while (``services.psp.outage``)."""
    _from_loopback(request)
    outage = request.app[OUTAGE].start(payloads.json_object(await request.read()),
                                       request.app[SETTINGS].slow_delay_s)
    log.warning("outage started", extra={"outage": outage.mode,
                                         "delay_s": outage.delay_s})
    return ApiResponse.of(200, outage.as_json()).to_web()


async def end_outage(request: web.Request) -> web.Response:
    _from_loopback(request)
    request.app[OUTAGE].end()
    log.warning("outage ended")
    return ApiResponse.of(200, {"status": "ok"}).to_web()


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].exposition(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
