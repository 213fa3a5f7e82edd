"""The orders API's own settings, read once at start-up; a bad value names its variable.

The shared ones (database, Kafka, bind host) are ``outbox.settings.ServiceSettings``.
The reservation TTL is the inventory's setting, read here too because it bounds what a
customer may ask for: a deadline that outlives the reservation would let a capture
land after the units were released, and the sale then fails with the money taken.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from outbox.errors import ConfigError
from outbox.settings import env_number

TTL_VARIABLE = "CHOREO_RESERVATION_TTL_S"
DEADLINE_VARIABLE = "CHOREO_ORDER_DEADLINE_S"


@dataclass(frozen=True)
class ApiSettings:
    port: int = 18080
    deadline_s: float = 30.0
    """The deadline of an order whose request names none."""
    reservation_ttl_s: float = 120.0
    """Every deadline, the default and a request's ``deadline_s``, must be below it."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        port = int(env_number(env, "CHOREO_ORDERS_PORT", cls.port))
        deadline_s = float(env_number(env, DEADLINE_VARIABLE, cls.deadline_s, float))
        ttl_s = float(env_number(env, TTL_VARIABLE, cls.reservation_ttl_s, float))
        if not (math.isfinite(deadline_s) and deadline_s > 0):
            raise ConfigError(f"{DEADLINE_VARIABLE} must be a positive number of seconds")
        if not math.isfinite(ttl_s) or ttl_s <= deadline_s:
            raise ConfigError(f"{TTL_VARIABLE}={ttl_s:g} must be greater than"
                              f" {DEADLINE_VARIABLE}={deadline_s:g}")
        return cls(port=port, deadline_s=deadline_s, reservation_ttl_s=ttl_s)
