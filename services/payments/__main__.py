"""``python -m choreo.services.payments``: consume orders and reservations, charge and refund.

The settings (``services.payments.settings`` and the shared ``ServiceSettings``) are
read here and only here, once, failing before anything starts with the variable's name.
Exit status 2 means bad settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from choreo.outbox import (
    Circuit,
    ServiceDefinition,
    ServiceSettings,
    exit_status,
    run_service,
)
from choreo.schemas.catalog import SCHEMA_DIR
from choreo.services.payments.attempts import AttemptLog
from choreo.services.payments.handlers import build_handlers
from choreo.services.payments.provider import psp_down
from choreo.services.payments.psp_client import PspClient
from choreo.services.payments.settings import PaymentsSettings
from choreo.services.payments.store import SCHEMA

NAME = "payments"


def definition(settings: PaymentsSettings | None = None) -> ServiceDefinition:
    """Built from ``settings``, or from the defaults (for the contract check)."""
    settings = settings or PaymentsSettings()
    circuit = Circuit("psp", settings.breaker, counts=psp_down)
    return ServiceDefinition(
        name=NAME,
        schema_sql=SCHEMA,
        build_handlers=lambda writer: build_handlers(
            writer, PspClient(settings.psp_url, settings.psp_timeout_s,
                              settings.psp_answered_retries),
            AttemptLog(settings.database_url), settings.currency, circuit),
        health=lambda: {"circuits": {circuit.name: circuit.state}},
        # Each order's payment is its own row, and most of a charge is waiting for the
        # psp: the charges of one batch are sent side by side.
        key_concurrency=16,
        schemas=SCHEMA_DIR,
        emits=("PaymentCaptured", "PaymentDeclined", "PaymentRefunded"),
    )


def start(env: Mapping[str, str]) -> None:
    settings = PaymentsSettings.from_env(env)
    shared = ServiceSettings.from_env(NAME, env)
    run_service(definition(settings), shared)


if __name__ == "__main__":
    sys.exit(exit_status(NAME, start, os.environ))
