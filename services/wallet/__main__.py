"""``python -m choreo.services.wallet api|worker``: the top-up API, or the saga consumer.

Two processes, as for orders: a burst of top-ups and a backlog of events do not slow each
other, and either can be restarted (or killed by a chaos run) on its own. Settings are
read here, once; exit status 2 means bad settings or usage.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from choreo.outbox import ServiceDefinition, ServiceSettings, config, exit_status, http, run_service
from choreo.schemas.catalog import SCHEMA_DIR
from choreo.services.wallet.api import create_app
from choreo.services.wallet.handlers import EMITS, build_handlers, lock_run
from choreo.services.wallet.store import SCHEMA

NAME = "wallet"
PORT = 18092
"""The API's, standalone; the stack passes its own (``CHOREO_WALLET_PORT``)."""
DEFINITION = ServiceDefinition(NAME, SCHEMA, build_handlers, lock_first=lock_run,
                               schemas=SCHEMA_DIR, emits=EMITS)


def start_worker(env: Mapping[str, str]) -> None:
    run_service(DEFINITION, ServiceSettings.from_env(NAME, env))


def start_api(env: Mapping[str, str]) -> None:
    http.serve("wallet-api", DEFINITION, ServiceSettings.from_env(NAME, env),
               config.port(env, "CHOREO_WALLET_PORT", PORT), create_app)


ROLES = {"api": start_api, "worker": start_worker}


if __name__ == "__main__":
    sys.exit(exit_status(NAME, ROLES, os.environ, sys.argv[1:]))
