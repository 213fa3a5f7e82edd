"""``python -m choreo.services.orders api|worker``: the HTTP intake, or the saga consumer.

Two processes so that a burst of HTTP traffic and a backlog of events do not slow each
other down, and either can be restarted (or killed by a chaos run) on its own. Both read
their settings here, once (the shared ``ServiceSettings``, and for the API
``services.orders.settings.ApiSettings``). Exit status 2 means bad settings or usage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import (
    OutboxWriter,
    ServiceDefinition,
    ServiceSettings,
    exit_status,
    prepare_process,
    run_service,
)
from choreo.schemas.catalog import SCHEMA_DIR
from choreo.services.orders.api import create_app
from choreo.services.orders.handlers import build_handlers
from choreo.services.orders.jobs import DEADLINE_JOB
from choreo.services.orders.outcomes import outcomes_job
from choreo.services.orders.settings import ApiSettings

SCHEMA = Path(__file__).resolve().parent / "schema.sql"
EMITS = ("OrderPlaced", "OrderConfirmed", "OrderCancelled", "OrderRejected")
"""The intake places orders; the worker confirms, cancels or rejects them."""
DEFINITION = ServiceDefinition("orders", SCHEMA, build_handlers, [DEADLINE_JOB, outcomes_job()],
                               schemas=SCHEMA_DIR, emits=EMITS)
log = logging.getLogger("orders")


POOL_RECONNECT_S = 5.0
"""How long the pool retries one connection in the background before giving it up. Its
backoff doubles between attempts, so a long retry would leave minutes between attempts
after a long outage; given up early, the next request that needs a connection starts a
fresh attempt at once, so the API is back within a request of the database."""


def connection_pool(database_url: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        database_url, min_size=2, max_size=10, open=False,
        reconnect_timeout=POOL_RECONNECT_S,
        # A connection broken by a database restart is replaced rather than handed out.
        check=AsyncConnectionPool.check_connection,
    )


async def serve(settings: ServiceSettings, api: ApiSettings) -> None:
    writer = OutboxWriter.for_schemas("orders", SCHEMA_DIR, emits=EMITS)
    async with connection_pool(settings.database_url) as pool:
        await pool.wait()
        runner = web.AppRunner(create_app(pool, writer, api), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.bind_host, api.port, shutdown_timeout=10).start()
        log.info("listening on %s:%d", settings.bind_host, api.port)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
        await runner.cleanup()


def run_api(settings: ServiceSettings, api: ApiSettings) -> None:
    prepare_process("orders-api", settings, SCHEMA)
    asyncio.run(serve(settings, api))


def start_worker(env: Mapping[str, str]) -> None:
    run_service(DEFINITION, ServiceSettings.from_env("orders", env))


def start_api(env: Mapping[str, str]) -> None:
    # The API's /health is on its own port (ApiSettings.port): no metrics port.
    run_api(ServiceSettings.from_env("orders", env), ApiSettings.from_env(env))


ROLES = {"api": start_api, "worker": start_worker}


def run(argv: list[str]) -> int:
    role = ROLES.get(argv[0] if argv else "")
    if role is None:
        print("usage: python -m choreo.services.orders api|worker", file=sys.stderr)
        return 2
    return exit_status("orders", role, os.environ)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
