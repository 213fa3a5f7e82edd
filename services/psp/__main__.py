"""``python -m choreo.services.psp``: serve the psp (on 127.0.0.1 by default) until SIGTERM
or SIGINT.

The process reads its settings once, logs JSON lines to stdout, and on SIGTERM stops
accepting connections, lets requests in flight finish (a ``tok_slow`` capture commits
rather than being cut off), closes the database pool and exits 0. Exit status 2 means
bad settings, 1 that the database or the port was unavailable at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout

from choreo.outbox import logs
from choreo.outbox.errors import ConfigError
from choreo.outbox.telemetry import configure_tracing
from choreo.services.psp.app import create_app
from choreo.services.psp.settings import PspSettings

log = logging.getLogger("psp")

SHUTDOWN_GRACE_S = 10.0
"""How long requests in flight get to finish after SIGTERM."""


async def serve(settings: PspSettings) -> None:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.bind_host, settings.port,
                           shutdown_timeout=SHUTDOWN_GRACE_S + settings.slow_delay_s)
        await site.start()
        log.info("psp listening", extra={"port": settings.port,
                                         "slow_delay_s": settings.slow_delay_s})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("psp stopping")
    finally:
        await runner.cleanup()


def main() -> int:
    logs.configure("psp")
    try:
        settings = PspSettings.from_env(os.environ)
    except ConfigError as error:
        log.error("invalid settings: %s", error)
        return 2
    configure_tracing("psp", settings.telemetry_url, settings.trace_sampling)
    try:
        asyncio.run(serve(settings))
    except (OSError, PoolTimeout, psycopg.Error) as error:
        log.error("psp could not start: %s", error)
        return 1
    log.info("psp stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
