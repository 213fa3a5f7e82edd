"""``python -m choreo.services.users``: the users API, until SIGTERM.

The settings are read here, once; exit status 2 means a bad one. An HTTP process only:
the users service consumes nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from choreo.outbox import ServiceDefinition, ServiceSettings, config, exit_status, http
from choreo.schemas.catalog import SCHEMA_DIR
from choreo.services.users.api import create_app

NAME = "users"
PORT = 18091
"""Standalone; the stack passes its own (``CHOREO_USERS_PORT``, ``stack.manifest``)."""
DEFINITION = ServiceDefinition(
    NAME, Path(__file__).resolve().parent / "schema.sql", lambda writer: {},
    schemas=SCHEMA_DIR, emits=("CustomerRegistered", "PreferencesChanged",
                               "CustomerStatusChanged"))


def start(env: Mapping[str, str]) -> None:
    http.serve(NAME, DEFINITION, ServiceSettings.from_env(NAME, env),
               config.port(env, "CHOREO_USERS_PORT", PORT), create_app)


if __name__ == "__main__":
    sys.exit(exit_status(NAME, start, os.environ))
