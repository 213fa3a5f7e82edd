"""The payments service's own settings, read once by ``__main__`` from the environment.

The shared ones (database, Kafka, Redis, metrics port, retries) are
``outbox.settings.ServiceSettings``; this adds where the psp is, how long a call to it
may take, and its circuit breaker. A bad value fails at start-up, naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from choreo.outbox import CircuitSettings, config

PSP_PORT = 18090
"""The psp's own default port: where it listens when nobody says otherwise."""


@dataclass(frozen=True)
class PaymentsSettings:
    psp_url: str = f"http://127.0.0.1:{PSP_PORT}"
    """``CHOREO_PSP_URL``, else the psp on this host at ``CHOREO_PSP_PORT``."""
    psp_timeout_s: float = 5.0
    psp_answered_retries: int = 2
    """``CHOREO_PSP_ANSWERED_RETRIES``: how often a charge or refund the psp answered with a
    server error is sent again at once, before the batch transaction is rolled back
    (``services.payments.psp_client``)."""
    currency: str = "EUR"
    database_url: str = ""
    """For the charge attempts' own connection (``ServiceSettings`` validates it)."""
    breaker: CircuitSettings = CircuitSettings()
    """The psp's circuit breaker: ``CHOREO_PSP_BREAKER_FAILURES`` failures in a row open
    it, ``CHOREO_PSP_BREAKER_RESET_S`` later the next calls probe the psp."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PaymentsSettings:
        # The port is read only when it is used: an explicit URL makes it irrelevant.
        psp_url = config.url(env, "CHOREO_PSP_URL") or \
            f"http://127.0.0.1:{config.port(env, 'CHOREO_PSP_PORT', PSP_PORT)}"
        return cls(
            psp_url=psp_url,
            psp_timeout_s=config.number(env, "CHOREO_PSP_TIMEOUT_S", cls.psp_timeout_s,
                                        gt=0, le=300),
            psp_answered_retries=config.integer(env, "CHOREO_PSP_ANSWERED_RETRIES",
                                                cls.psp_answered_retries, ge=0, le=10),
            database_url=config.text(env, "CHOREO_DATABASE_URL"),
            breaker=CircuitSettings.from_env(env, "CHOREO_PSP"),
        )
