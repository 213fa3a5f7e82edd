"""``python -m choreo.services.notification``: tell customers how their orders went.

The settings are read here, once: the shared ``ServiceSettings`` and where the message
provider is (``CHOREO_NOTIFIER_URL``, else the stand-in on this host at
``CHOREO_NOTIFIER_PORT``), how long a send may take, and its circuit breaker. Exit
status 2 means a bad setting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from choreo.outbox import (
    Circuit,
    CircuitSettings,
    PeriodicJob,
    ServiceDefinition,
    ServiceSettings,
    config,
    exit_status,
    run_service,
)
from choreo.schemas.catalog import SCHEMA_DIR
from choreo.services.notification.handlers import EMITS, build_handlers, settle_pending
from choreo.services.notification.provider import Notifier, provider_down

NAME = "notification"
NOTIFIER_PORT = 18093
"""The stand-in provider's own default port."""


def definition(notifier_url: str = f"http://127.0.0.1:{NOTIFIER_PORT}", timeout_s: float = 5.0,
               breaker: CircuitSettings | None = None) -> ServiceDefinition:
    """Built from the settings, or from the defaults (for the contract check)."""
    circuit = Circuit("notifier", breaker or CircuitSettings(), counts=provider_down)
    notifier = Notifier(notifier_url, timeout_s, circuit)
    return ServiceDefinition(
        NAME, Path(__file__).resolve().parent / "schema.sql",
        lambda writer: build_handlers(writer, notifier),
        jobs=[PeriodicJob("settle-pending-messages", 1.0, settle_pending(notifier))],
        health=lambda: {"circuits": {circuit.name: circuit.state}},
        # Most of a send is waiting for the provider: the orders of a batch side by side.
        key_concurrency=8, schemas=SCHEMA_DIR, emits=EMITS)


def start(env: Mapping[str, str]) -> None:
    url = config.url(env, "CHOREO_NOTIFIER_URL") or \
        f"http://127.0.0.1:{config.port(env, 'CHOREO_NOTIFIER_PORT', NOTIFIER_PORT)}"
    timeout_s = config.number(env, "CHOREO_NOTIFIER_TIMEOUT_S", 2.0, gt=0, le=300)
    run_service(definition(url, timeout_s, CircuitSettings.from_env(env, "CHOREO_NOTIFIER")),
                ServiceSettings.from_env(NAME, env))


if __name__ == "__main__":
    sys.exit(exit_status(NAME, start, os.environ))
