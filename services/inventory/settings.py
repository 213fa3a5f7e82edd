"""The inventory's own settings, read once by ``__main__`` from the environment.

The shared ones (database, Kafka, Redis, metrics port, retries) are
``outbox.settings.ServiceSettings``; this adds what only the inventory needs. A bad
value fails at start-up, naming the variable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from outbox.errors import ConfigError

TTL_VARIABLE = "CHOREO_RESERVATION_TTL_S"


@dataclass(frozen=True)
class InventorySettings:
    reservation_ttl_s: float = 120.0
    """How long reserved units wait for a confirmation before the sweeper releases them."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InventorySettings:
        raw = env.get(TTL_VARIABLE, "").strip()
        if not raw:
            return cls()
        try:
            ttl = float(raw)
        except ValueError:
            raise ConfigError(f"{TTL_VARIABLE}={raw!r} is not a number of seconds") from None
        if not (math.isfinite(ttl) and ttl > 0):
            raise ConfigError(f"{TTL_VARIABLE}={raw!r} must be a positive number of seconds")
        return cls(reservation_ttl_s=ttl)
