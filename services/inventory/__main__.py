"""``python -m services.inventory``: the inventory participant, until SIGTERM.

The shared consumer runner applies the schema, seeds the catalog if it is empty, consumes
order and payment events, runs the expiry sweeper and serves metrics and health. Exit
status 2 means bad settings.
"""

from __future__ import annotations

import os
import sys
from functools import partial

from outbox import runner
from outbox.errors import ConfigError
from services.inventory.catalog import seed_catalog
from services.inventory.handlers import build_handlers
from services.inventory.jobs import expiry_job
from services.inventory.settings import InventorySettings
from services.inventory.store import SCHEMA_SQL

NAME = "inventory"
METRICS_PORT = 18081


def definition(settings: InventorySettings) -> runner.ServiceDefinition:
    return runner.ServiceDefinition(
        name=NAME,
        schema_sql=SCHEMA_SQL,
        build_handlers=partial(build_handlers, reservation_ttl_s=settings.reservation_ttl_s),
        jobs=[expiry_job()],
        on_start=seed_catalog,
    )


def run() -> int:
    try:
        runner.main(definition(InventorySettings.from_env(os.environ)),
                     default_metrics_port=METRICS_PORT)
    except ConfigError as error:
        print(f"{NAME}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())
