"""``python -m services.orders api|worker``: the HTTP intake, or the saga consumer.

Two processes so that a burst of HTTP traffic and a backlog of events do not slow each
other down, and either can be restarted (or killed by a chaos run) on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from outbox import logs
from outbox.codec import EventCodec
from outbox.errors import ConfigError
from outbox.runner import OUTBOX_SCHEMA, ServiceDefinition, apply_schema, main
from outbox.settings import ServiceSettings
from outbox.telemetry import configure_tracing
from outbox.writer import OutboxWriter
from schemas.catalog import SchemaCatalog
from services.orders.api import create_app
from services.orders.handlers import build_handlers
from services.orders.jobs import DEADLINE_JOB
from services.orders.outcomes import outcomes_job
from services.orders.settings import ApiSettings

SCHEMA = Path(__file__).resolve().parent / "schema.sql"
DEFINITION = ServiceDefinition("orders", SCHEMA, build_handlers, [DEADLINE_JOB, outcomes_job()])
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
    writer = OutboxWriter(EventCodec(SchemaCatalog.load()), source="orders")
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


def run_api() -> None:
    settings = ServiceSettings.from_env("orders")
    api = ApiSettings.from_env(os.environ)
    logs.configure("orders-api")
    configure_tracing("orders-api", settings.telemetry_url)
    apply_schema(settings.database_url, OUTBOX_SCHEMA, SCHEMA)
    asyncio.run(serve(settings, api))


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        if role == "api":
            run_api()
        elif role == "worker":
            main(DEFINITION, default_metrics_port=18084)
        else:
            sys.exit("usage: python -m services.orders api|worker")
    except ConfigError as exc:
        sys.exit(f"orders: {exc}")
