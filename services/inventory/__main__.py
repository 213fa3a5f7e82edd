"""``python -m choreo.services.inventory``: the inventory participant, until SIGTERM.

The settings are read here, once; the shared consumer runner then applies the schema,
seeds the catalog if it is empty, consumes order and payment events, runs the expiry
sweeper and serves metrics and health. Exit status 2 means bad settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from functools import partial

from choreo.outbox import ServiceDefinition, ServiceSettings, exit_status, run_service
from choreo.schemas.catalog import SCHEMA_DIR
from choreo.services.inventory.catalog import seed_catalog
from choreo.services.inventory.handlers import build_handlers, lock_run
from choreo.services.inventory.jobs import expiry_job
from choreo.services.inventory.settings import InventorySettings
from choreo.services.inventory.store import SCHEMA_SQL

NAME = "inventory"


def definition(settings: InventorySettings | None = None) -> ServiceDefinition:
    """Built from ``settings``, or from the defaults (for the contract check)."""
    settings = settings or InventorySettings()
    return ServiceDefinition(
        name=NAME,
        schema_sql=SCHEMA_SQL,
        build_handlers=partial(build_handlers, reservation_ttl_s=settings.reservation_ttl_s),
        jobs=[expiry_job()],
        on_start=seed_catalog,
        # Stock rows are shared between orders: replicas' runs lock them in one order.
        lock_first=lock_run,
        schemas=SCHEMA_DIR,
        emits=("StockReserved", "StockReservationFailed", "StockReleased"),
    )


def start(env: Mapping[str, str]) -> None:
    own = InventorySettings.from_env(env)
    shared = ServiceSettings.from_env(NAME, env)
    run_service(definition(own), shared)


if __name__ == "__main__":
    sys.exit(exit_status(NAME, start, os.environ))
