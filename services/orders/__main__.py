"""``python -m choreo.services.orders api|worker``: the HTTP intake, or the saga consumer.

Two processes so that a burst of HTTP traffic and a backlog of events do not slow each
other down, and either can be restarted (or killed by a chaos run) on its own. Both read
their settings here, once (the shared ``ServiceSettings``, and for the API
``services.orders.settings.ApiSettings``). Exit status 2 means bad settings or usage.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from choreo.outbox import (
    ServiceDefinition,
    ServiceSettings,
    exit_status,
    http,
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


def run_api(settings: ServiceSettings, api: ApiSettings) -> None:
    http.serve("orders-api", DEFINITION, settings, api.port,
               lambda pool, writer: create_app(pool, writer, api))


def start_worker(env: Mapping[str, str]) -> None:
    run_service(DEFINITION, ServiceSettings.from_env("orders", env))


def start_api(env: Mapping[str, str]) -> None:
    # The API's /health is on its own port (ApiSettings.port): no metrics port.
    run_api(ServiceSettings.from_env("orders", env), ApiSettings.from_env(env))


ROLES = {"api": start_api, "worker": start_worker}


if __name__ == "__main__":
    sys.exit(exit_status("orders", ROLES, os.environ, sys.argv[1:]))
