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
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from psycopg_pool import AsyncConnectionPool

from outbox import logs
from outbox.codec import EventCodec
from outbox.errors import ConfigError
from outbox.service import OUTBOX_SCHEMA, ServiceDefinition, apply_schema, main
from outbox.settings import ServiceSettings, env_number
from outbox.writer import OutboxWriter
from schemas.catalog import SchemaCatalog
from services.orders.api import create_app
from services.orders.handlers import build_handlers
from services.orders.jobs import DEADLINE_JOB

SCHEMA = Path(__file__).resolve().parent / "schema.sql"
DEFINITION = ServiceDefinition("orders", SCHEMA, build_handlers, [DEADLINE_JOB])
log = logging.getLogger("orders")


async def serve(settings: ServiceSettings, port: int, deadline_s: float) -> None:
    writer = OutboxWriter(EventCodec(SchemaCatalog.load()), source="orders")
    async with AsyncConnectionPool(settings.database_url, min_size=2, max_size=10,
                                   open=False) as pool:
        await pool.wait()
        runner = web.AppRunner(create_app(pool, writer, deadline_s), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.bind_host, port, shutdown_timeout=10).start()
        log.info("listening on %s:%d", settings.bind_host, port)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
        await runner.cleanup()


def run_api() -> None:
    settings = ServiceSettings.from_env("orders")
    port = int(env_number(os.environ, "CHOREO_ORDERS_PORT", 18080))
    deadline_s = float(env_number(os.environ, "CHOREO_ORDER_DEADLINE_S", 30.0, float))
    if deadline_s <= 0:
        raise ConfigError("CHOREO_ORDER_DEADLINE_S must be positive")
    logs.configure("orders-api")
    trace.set_tracer_provider(TracerProvider())
    apply_schema(settings.database_url, OUTBOX_SCHEMA, SCHEMA)
    asyncio.run(serve(settings, port, deadline_s))


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
