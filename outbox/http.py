"""An HTTP intake on the outbox: JSON errors, Idempotency-Key, health, metrics, serving.

An intake commits a state change and its event in one transaction, like a handler, but
answers a client instead of a topic. What every such intake needs, whatever its routes,
is here (``from choreo.outbox import http``), so an intake of a team's own writes only
its routes:

- every error is JSON with a machine-readable code and, for validation, the field
  (``{"error": {"code": "validation_failed", "field": "items[0].quantity", ...}}``),
  including what aiohttp itself rejects (404, 405, 413) and anything unexpected (500);
- a database that does not answer is 503 ``database_unavailable`` with ``Retry-After``
  after at most ``DB_WAIT_S``; the pool reconnects by itself;
- :func:`claim` makes a write idempotent: the Idempotency-Key is claimed in the write's
  own transaction (``idempotency_keys``, one of the library's tables), so a retry gets the
  first answer again, and a key reused with another request gets 422;
- ``/health`` (the database answers), ``/metrics`` and ``/openapi.json``;
- :func:`serve` runs the application until SIGTERM, after the process's logs, tracing and
  tables are set up as for a consumer, behind the callers' authentication of
  ``outbox.access`` (API keys or a proxy's identity header; required off loopback).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from choreo.outbox.access import CALLER as CALLER  # who asked, for an intake's handlers
from choreo.outbox.access import AccessSettings
from choreo.outbox.access import middleware as access_middleware
from choreo.outbox.runner import ServiceDefinition, prepare_process
from choreo.outbox.settings import ServiceSettings
from choreo.outbox.writer import OutboxWriter

MAX_BODY_BYTES = 64 * 1024
MAX_KEY_LENGTH = 200
KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DB_WAIT_S = 2.0
"""How long a request waits for a database connection before answering 503: long enough
to ride out a pool refilling after a restart, short enough for a client's timeout."""
RETRY_AFTER_S = 2
POOL_RECONNECT_S = 5.0
"""How long the pool retries one connection in the background before giving it up. Its
backoff doubles between attempts, so a long retry would leave minutes between attempts
after a long outage; given up early, the next request that needs a connection starts a
fresh attempt at once, so the API is back within a request of the database."""

REQUESTS = Counter("choreo_http_requests_total", "HTTP requests", ["route", "status"])
LATENCY = Histogram("choreo_http_request_seconds", "HTTP request latency", ["route"])

POOL = web.AppKey("pool", AsyncConnectionPool)
WRITER = web.AppKey("writer", OutboxWriter)
SERVICE = web.AppKey("service", str)

log = logging.getLogger(__name__)

CLAIM = """
INSERT INTO idempotency_keys (key, fingerprint) VALUES (%s, %s)
ON CONFLICT (key) DO NOTHING RETURNING key
"""
FIND = "SELECT fingerprint, status, body FROM idempotency_keys WHERE key = %s"
REMEMBER = "UPDATE idempotency_keys SET status = %s, body = %s WHERE key = %s"
PRUNE = """
DELETE FROM idempotency_keys WHERE key IN (
    SELECT key FROM idempotency_keys WHERE created_at < now() - make_interval(secs => %s)
    LIMIT 5000)
"""
PRUNE_EVERY_S = 300.0


class InvalidRequest(ValueError):
    """A request the client must fix; ``field`` is a JSON path such as ``items[2].sku``
    (``$`` for the body, or a header's name), and ``code`` the error's code."""

    def __init__(self, field: str, message: str, code: str = "validation_failed") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code


def error(status: int, code: str, message: str, field: str | None = None,
          headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response({"error": body}, status=status, headers=headers)


def invalid(problem: InvalidRequest) -> web.Response:
    """400 for a body that is not JSON (or not sent as JSON), 422 for JSON that is wrong."""
    status = 400 if problem.field in ("$", "Content-Type", KEY_HEADER) else 422
    return error(status, problem.code, problem.message, problem.field)


def database_unavailable(service: str) -> web.Response:
    return error(503, "database_unavailable",
                 f"the {service} database is unreachable; retry later (the same"
                 f" {KEY_HEADER} is safe)", headers={"Retry-After": str(RETRY_AFTER_S)})


@web.middleware
async def observe(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    """Metrics, and JSON errors for whatever aiohttp itself rejects (404, 405, 413), an
    invalid request, an unreachable database (503) and anything unexpected (500), never
    aiohttp's HTML page. The server span around it (continuing a caller's traceparent) is
    the aiohttp-server instrumentation's, installed by ``outbox.telemetry``."""
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unmatched"
    service = request.app[SERVICE]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason,
                         headers=allow)
    except InvalidRequest as problem:
        response = invalid(problem)
    except psycopg.OperationalError as exc:  # PoolTimeout is one too
        log.warning("database unavailable: %s", exc)
        response = database_unavailable(service)
    except Exception:
        log.exception("unexpected error")
        response = error(500, "internal_error", f"unexpected error in the {service} API;"
                         f" retrying with the same {KEY_HEADER} is safe")
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


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get(KEY_HEADER, "")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(KEY_HEADER, f"send an {KEY_HEADER} header of 1-{MAX_KEY_LENGTH}"
                                         " characters", "idempotency_key_required")
    return key


def fingerprint(*parts: object) -> str:
    """Same request, same digest: how a retried key is told apart from a reused one."""
    canonical = json.dumps(parts, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(conn: psycopg.AsyncConnection[Any], key: str, digest: str
                ) -> web.Response | None:
    """In the write's transaction: None when ``key`` is new (claimed now; it commits or
    rolls back with the write, and :func:`remember` stores the answer), else the answer
    to give instead: the first one again (with ``Idempotent-Replayed: true``), or 422
    when the key came with another request. A concurrent first use of the same key waits
    on the row until that request commits, then gets its answer."""
    if await (await conn.execute(CLAIM, (key, digest))).fetchone() is not None:
        return None
    row = await (await conn.execute(FIND, (key,))).fetchone()
    if row is None or row[1] is None:  # rolled back meanwhile, or not remembered
        return error(409, "idempotency_key_in_use", "a request with this key did not"
                     " finish; retry it", KEY_HEADER)
    if row[0] != digest:
        return error(422, "idempotency_key_reused",
                     f"this {KEY_HEADER} was used with a different request", KEY_HEADER)
    return web.json_response(row[2], status=row[1], headers={REPLAYED_HEADER: "true"})


async def remember(conn: psycopg.AsyncConnection[Any], key: str, status: int,
                   body: dict[str, Any]) -> web.Response:
    """Store the answer to the claimed ``key`` in the same transaction, and return it."""
    await conn.execute(REMEMBER, (status, Jsonb(body), key))
    return web.json_response(body, status=status)


def connection_pool(database_url: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        database_url, min_size=2, max_size=10, open=False,
        reconnect_timeout=POOL_RECONNECT_S,
        # A connection broken by a database restart is replaced rather than handed out.
        check=AsyncConnectionPool.check_connection,
    )


async def health(request: web.Request) -> web.Response:
    try:
        async with request.app[POOL].connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, said in the body
        return web.json_response({"status": "unavailable", "database": str(exc)}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def application(service: str, pool: AsyncConnectionPool, writer: OutboxWriter,
                openapi: Path) -> web.Application:
    """An application with the JSON errors, metrics, ``/health``, ``/metrics`` and
    ``/openapi.json``; the intake adds its own routes."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[observe])
    app[SERVICE], app[POOL], app[WRITER] = service, pool, writer

    async def document(request: web.Request) -> web.Response:
        return web.Response(body=openapi.read_bytes(), content_type="application/json")

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", document)
    return app


def unauthorized(message: str) -> web.Response:
    return error(401, "unauthorized", message,
                 headers={"WWW-Authenticate": 'Bearer realm="choreo"'})


def protect(app: web.Application, access: AccessSettings) -> web.Application:
    """Let only authenticated callers past ``observe`` (``outbox.access``); ``serve`` does
    this to every intake, a test may to an application of its own."""
    app.middlewares.append(access_middleware(access, unauthorized))
    return app


AppFactory = Callable[[AsyncConnectionPool, OutboxWriter], web.Application]


async def prune_keys(pool: AsyncConnectionPool, retention_s: float) -> None:
    """Forever: keys older than ``retention_s`` go, a batch per round. A retry after that
    long is a new request; an unreachable database only skips the round."""
    while True:
        try:
            async with pool.connection(DB_WAIT_S) as conn:
                while (await conn.execute(PRUNE, (retention_s,))).rowcount == 5000:
                    await conn.commit()
        except psycopg.Error as exc:
            log.warning("idempotency keys not pruned this round: %s", exc)
        await asyncio.sleep(PRUNE_EVERY_S)


def serve(process: str, definition: ServiceDefinition, settings: ServiceSettings, port: int,
          make_app: AppFactory) -> None:
    """Run the intake ``make_app`` builds until SIGTERM: the process's logs, tracing and
    tables first (as a consumer's), then a writer for the definition's schemas and
    declared events, a connection pool, and the server on ``settings.bind_host``."""
    settings.access.check_exposure(settings.bind_host)
    prepare_process(process, settings, definition.schema_sql)
    writer = OutboxWriter.for_schemas(definition.name, definition.schemas,
                                      emits=definition.emits)

    async def run() -> None:
        async with connection_pool(settings.database_url) as pool:
            await pool.wait()
            runner = web.AppRunner(protect(make_app(pool, writer), settings.access),
                                   access_log=None)
            await runner.setup()
            await web.TCPSite(runner, settings.bind_host, port, shutdown_timeout=10).start()
            log.info("listening on %s:%d", settings.bind_host, port)
            pruning = asyncio.create_task(prune_keys(pool, settings.inbox_retention_s))
            stop = asyncio.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(signum, stop.set)
            await stop.wait()
            pruning.cancel()
            await runner.cleanup()

    asyncio.run(run())
