"""What a consumer process says about itself: its lag, its events, its partitions.

Read by the rolling restart (is it consuming again?), by the chaos runs' quiescence (has
everyone caught up?) and by ``wait_shared`` (does every replica own partitions?). A
consumer's lag comes from the ``lag`` field of its ``/health`` JSON; a runtime that
does not report it there is read from its ``choreo_consumer_lag`` gauges on
``/metrics``. That gauge is refreshed only every few seconds, so whoever asks "caught
up?" also waits for ``events`` to stand still.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

from stack.services import spec_of
from stack.settings import CONSUMER_SERVICES, StackSettings

CONSUMERS = CONSUMER_SERVICES
"""The consumer services; ``stack.services.consumer_processes`` names each of their
processes (replicas included)."""


@dataclass(frozen=True)
class Reading:
    lag: int
    events: float
    """``choreo_events_total`` summed: any change means it is still handling events."""
    partitions: int = 0
    """How many partitions it owns now (its /health): replicas share them."""


def metrics_port(settings: StackSettings, name: str) -> int:
    """The /health and /metrics port of a consumer process (``payments-2`` included)."""
    return spec_of(name).port(settings)


def read(port: int) -> Reading:
    base = f"http://127.0.0.1:{port}"
    health = requests.get(f"{base}/health", timeout=2).json()
    families = list(text_string_to_metric_families(
        requests.get(f"{base}/metrics", timeout=2).text))

    def total(sample_name: str) -> float:
        return sum(sample.value for family in families for sample in family.samples
                   if sample.name == sample_name)

    lag = health.get("lag")
    if not isinstance(lag, int):
        lag = int(total("choreo_consumer_lag"))
    return Reading(lag, total("choreo_events_total"), int(health.get("partitions", 0)))
