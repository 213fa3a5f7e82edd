"""The inventory's own settings, read once by ``__main__`` from the environment.

The shared ones (database, Kafka, Redis, metrics port, retries) are
``outbox.settings.ServiceSettings``; this adds what only the inventory needs. A bad
value fails at start-up, naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from choreo.outbox import config

TTL_VARIABLE = "CHOREO_RESERVATION_TTL_S"


@dataclass(frozen=True)
class InventorySettings:
    reservation_ttl_s: float = 120.0
    """How long reserved units wait for a confirmation before the sweeper releases them."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InventorySettings:
        return cls(reservation_ttl_s=config.number(env, TTL_VARIABLE, cls.reservation_ttl_s,
                                                   gt=0))
