"""``python -m choreo.services.notifier``: the message provider stand-in, until SIGTERM.

Not a participant: it stands in for an outside provider, as the psp does, and emits no
events (it shares only the library's HTTP kit). Exit status 2 means a bad setting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from choreo.outbox import ServiceDefinition, ServiceSettings, config, exit_status, http
from choreo.schemas.catalog import SCHEMA_DIR
from choreo.services.notifier.app import create_app

NAME = "notifier"
PORT = 18093
"""Standalone; the stack passes its own (``CHOREO_NOTIFIER_PORT``, ``stack.manifest``)."""
DEFINITION = ServiceDefinition(NAME, Path(__file__).resolve().parent / "schema.sql",
                               lambda writer: {}, schemas=SCHEMA_DIR, emits=())


def start(env: Mapping[str, str]) -> None:
    slow_delay_s = config.number(env, "CHOREO_NOTIFIER_SLOW_DELAY_S", 3.0, ge=0, le=300)
    http.serve(NAME, DEFINITION, ServiceSettings.from_env(NAME, env),
               config.port(env, "CHOREO_NOTIFIER_PORT", PORT),
               lambda pool, writer: create_app(pool, writer, slow_delay_s))


if __name__ == "__main__":
    sys.exit(exit_status(NAME, start, os.environ))
