"""The orders API's own settings, read once at start-up; a bad value names its variable.

The shared ones (database, Kafka, bind host) are ``outbox.settings.ServiceSettings``.
The reservation TTL is the inventory's setting, read here too because it bounds what a
customer may ask for: a deadline that outlives the reservation would let a capture
land after the units were released, and the sale then fails with the money taken.

Admission control (``services.orders.admission``): a per-client rate limit, off unless
``CHOREO_ORDERS_RATE_LIMIT_PER_S`` is set, since the benchmarks and the chaos load send a
few hundred orders a second as one customer; and load shedding once
``CHOREO_ORDERS_MAX_PENDING`` orders are PENDING (0 turns it off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from choreo.outbox import ConfigError, config

PORT_VARIABLE = "CHOREO_ORDERS_PORT"
TTL_VARIABLE = "CHOREO_RESERVATION_TTL_S"
DEADLINE_VARIABLE = "CHOREO_ORDER_DEADLINE_S"
RATE_VARIABLE = "CHOREO_ORDERS_RATE_LIMIT_PER_S"
BURST_VARIABLE = "CHOREO_ORDERS_RATE_LIMIT_BURST"
CLIENTS_VARIABLE = "CHOREO_ORDERS_RATE_LIMIT_CLIENTS"
MAX_PENDING_VARIABLE = "CHOREO_ORDERS_MAX_PENDING"
SAMPLE_VARIABLE = "CHOREO_ORDERS_PENDING_SAMPLE_S"


@dataclass(frozen=True)
class ApiSettings:
    port: int = 18080
    """Standalone; the stack passes its own (``CHOREO_ORDERS_PORT``, ``stack.manifest``)."""
    deadline_s: float = 30.0
    """The deadline of an order whose request names none."""
    reservation_ttl_s: float = 120.0
    """Every deadline, the default and a request's ``deadline_s``, must be below it."""
    rate_limit_per_s: float = 0.0
    """Orders per second per client (API key, else customer id); 0: no limit."""
    rate_limit_burst: int = 20
    """Orders a client may send at once before the rate applies (the bucket's size)."""
    rate_limit_clients: int = 10_000
    """Clients whose bucket is kept; beyond it the least recently seen is forgotten."""
    max_pending: int = 1000
    """503 ``overloaded`` while this many orders are PENDING; 0: never. With the saga
    settling about 80 orders/s on the 2-core reference box, a new order behind 1,000
    waits some 12 s, well inside the 30 s deadline; behind 2,400 it would time out."""
    pending_sample_s: float = 1.0
    """How often the API counts the PENDING orders."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        deadline_s = config.number(env, DEADLINE_VARIABLE, cls.deadline_s, gt=0)
        ttl_s = config.number(env, TTL_VARIABLE, cls.reservation_ttl_s, ge=0)
        if ttl_s <= deadline_s:
            raise ConfigError(f"{TTL_VARIABLE}={ttl_s:g} must be greater than"
                              f" {DEADLINE_VARIABLE}={deadline_s:g}")
        rate = config.number(env, RATE_VARIABLE, cls.rate_limit_per_s, ge=0)
        burst = config.integer(env, BURST_VARIABLE, cls.rate_limit_burst, ge=0)
        if rate > 0 and burst < 1:
            raise ConfigError(f"{BURST_VARIABLE} must be at least 1 when {RATE_VARIABLE}"
                              " is set")
        return cls(
            port=config.port(env, PORT_VARIABLE, cls.port),
            deadline_s=deadline_s,
            reservation_ttl_s=ttl_s,
            rate_limit_per_s=rate,
            rate_limit_burst=burst,
            rate_limit_clients=config.integer(env, CLIENTS_VARIABLE, cls.rate_limit_clients,
                                              ge=1),
            max_pending=config.integer(env, MAX_PENDING_VARIABLE, cls.max_pending, ge=0),
            pending_sample_s=config.number(env, SAMPLE_VARIABLE, cls.pending_sample_s, gt=0),
        )
