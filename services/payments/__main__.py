"""``python -m services.payments``: consume orders and reservations, charge and refund.

The psp settings are read here and only here, once, failing before anything starts
with the variable's name; the shared runner (``outbox.runner``) reads the rest.
Exit status 2 means bad settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from outbox import runner
from outbox.breaker import Circuit, CircuitSettings
from outbox.errors import ConfigError
from services.payments.attempts import AttemptLog
from services.payments.handlers import build_handlers
from services.payments.provider import psp_down
from services.payments.psp_client import PspClient
from services.payments.store import SCHEMA


@dataclass(frozen=True)
class PaymentsSettings:
    psp_url: str
    psp_timeout_s: float = 5.0
    currency: str = "EUR"
    database_url: str = ""
    """For the charge attempts' own connection (the runner validates the variable)."""
    breaker: CircuitSettings = CircuitSettings()
    """The psp's circuit breaker: ``CHOREO_PSP_BREAKER_FAILURES`` failures in a row open
    it, ``CHOREO_PSP_BREAKER_RESET_S`` later the next calls probe the psp."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PaymentsSettings:
        psp_url = env.get("CHOREO_PSP_URL") or \
            f"http://127.0.0.1:{_port(env, 'CHOREO_PSP_PORT', 18090)}"
        if not psp_url.startswith(("http://", "https://")):
            raise ConfigError(f"CHOREO_PSP_URL={psp_url!r} is not an http(s) URL")
        raw_timeout = env.get("CHOREO_PSP_TIMEOUT_S") or str(cls.psp_timeout_s)
        try:
            timeout_s = float(raw_timeout)
        except ValueError:
            raise ConfigError(f"CHOREO_PSP_TIMEOUT_S={raw_timeout!r} is not a number") from None
        if not 0 < timeout_s <= 300:
            raise ConfigError(f"CHOREO_PSP_TIMEOUT_S={raw_timeout!r} is outside (0, 300]")
        return cls(psp_url=psp_url, psp_timeout_s=timeout_s,
                   database_url=env.get("CHOREO_DATABASE_URL", ""), breaker=_breaker(env))


def _breaker(env: Mapping[str, str]) -> CircuitSettings:
    defaults = CircuitSettings()
    raw_failures = env.get("CHOREO_PSP_BREAKER_FAILURES") or str(defaults.fail_max)
    if not raw_failures.isdigit() or not 1 <= int(raw_failures) <= 1000:
        raise ConfigError(f"CHOREO_PSP_BREAKER_FAILURES={raw_failures!r} is not a whole"
                          " number in 1..1000")
    raw_reset = env.get("CHOREO_PSP_BREAKER_RESET_S") or str(defaults.reset_timeout_s)
    try:
        reset_s = float(raw_reset)
    except ValueError:
        raise ConfigError(f"CHOREO_PSP_BREAKER_RESET_S={raw_reset!r} is not a number") \
            from None
    if not 0 < reset_s <= 600:
        raise ConfigError(f"CHOREO_PSP_BREAKER_RESET_S={raw_reset!r} is outside (0, 600]")
    return CircuitSettings(fail_max=int(raw_failures), reset_timeout_s=reset_s)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 1024 <= int(raw) <= 65535:
        raise ConfigError(f"{name}={raw!r} is not a port in 1024..65535")
    return int(raw)


def definition(settings: PaymentsSettings) -> runner.ServiceDefinition:
    circuit = Circuit("psp", settings.breaker, counts=psp_down)
    return runner.ServiceDefinition(
        name="payments",
        schema_sql=SCHEMA,
        build_handlers=lambda writer: build_handlers(
            writer, PspClient(settings.psp_url, settings.psp_timeout_s),
            AttemptLog(settings.database_url), settings.currency, circuit),
        health=lambda: {"circuits": {circuit.name: circuit.state}},
        # Each order's payment is its own row, and most of a charge is waiting for the
        # psp: the charges of one batch are sent side by side.
        key_concurrency=16,
    )


def main() -> int:
    try:
        settings = PaymentsSettings.from_env(os.environ)
        runner.main(definition(settings), default_metrics_port=18082)
    except ConfigError as error:
        print(f"payments: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
