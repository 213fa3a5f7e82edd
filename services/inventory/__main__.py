"""``python -m services.inventory``: the inventory participant, until SIGTERM.

Seeds the catalog if it is empty, then hands over to the shared consumer runner, which
applies the schema, consumes order and payment events, runs the expiry sweeper and
serves metrics and health. Exit status 2 means bad settings.
"""

from __future__ import annotations

import os
import sys
from functools import partial

import psycopg

from outbox import service
from outbox.errors import ConfigError
from outbox.settings import ServiceSettings
from services.inventory.catalog import seed_catalog
from services.inventory.handlers import build_handlers
from services.inventory.jobs import expiry_job
from services.inventory.settings import InventorySettings
from services.inventory.store import SCHEMA_SQL

NAME = "inventory"
METRICS_PORT = 18081


def definition(settings: InventorySettings) -> service.ServiceDefinition:
    return service.ServiceDefinition(
        name=NAME,
        schema_sql=SCHEMA_SQL,
        build_handlers=partial(build_handlers, reservation_ttl_s=settings.reservation_ttl_s),
        jobs=[expiry_job()],
    )


def prepare_database(database_url: str) -> None:
    """Tables first, then the seed: the runner's own schema step comes too late for it."""
    service.apply_schema(database_url, service.OUTBOX_SCHEMA, SCHEMA_SQL)
    with psycopg.connect(database_url) as conn:
        seed_catalog(conn)


def run() -> int:
    try:
        settings = InventorySettings.from_env(os.environ)
        database_url = ServiceSettings.from_env(NAME, default_metrics_port=METRICS_PORT) \
            .database_url
    except ConfigError as error:
        print(f"{NAME}: {error}", file=sys.stderr)
        return 2
    prepare_database(database_url)
    service.main(definition(settings), default_metrics_port=METRICS_PORT)
    return 0


if __name__ == "__main__":
    sys.exit(run())
