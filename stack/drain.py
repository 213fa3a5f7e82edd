"""Wait for the consumers to catch up before ``choreo down`` stops them.

``down`` stops the intake, then waits (bounded, printing progress) until every consumer
is at the end of its partitions and has handled nothing for a moment, which means the
sagas in flight have run through every hop they can, rather than waiting out their
deadline while the stack is down. Nothing is lost without it: the broker's log is on
disk. The readings are also what the rolling restart, the chaos runs' quiescence and
``wait_shared`` ask a consumer.

A consumer's lag comes from the ``lag`` field of its ``/health`` JSON; a runtime that
does not report it there is read from its ``choreo_consumer_lag`` gauges on
``/metrics``. That gauge is refreshed only every few seconds, so "caught up" also asks
that the consumer's ``choreo_events_total`` has not moved for ``quiet_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

from choreo.stack.services import spec_of
from choreo.stack.settings import StackSettings

PROGRESS_EVERY_S = 1.0
POLL_S = 0.2

Report = Callable[[str], None]


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


def drain(settings: StackSettings, consumers: list[str], report: Report, timeout_s: float,
          quiet_s: float = 2.0) -> bool:
    """True when every consumer caught up within ``timeout_s``; False (said) otherwise."""
    ports = {name: metrics_port(settings, name) for name in consumers}
    started = time.monotonic()
    last: dict[str, Reading | None] = {}
    quiet_since = started
    next_progress = started + PROGRESS_EVERY_S
    while True:
        readings: dict[str, Reading | None] = {}
        for name, port in ports.items():
            try:
                readings[name] = read(port)
            except (requests.RequestException, ValueError):
                readings[name] = None  # not answering: it cannot drain, say so below
        now = time.monotonic()
        if readings != last:
            quiet_since, last = now, readings
        behind = {name: r.lag for name, r in readings.items() if r is not None and r.lag}
        silent = [name for name, r in readings.items() if r is None]
        if not behind and now - quiet_since >= quiet_s:
            if silent:
                report(f"drain: {', '.join(silent)} not answering; the others caught up in"
                       f" {now - started:.1f}s")
                return False
            report(f"drain: consumers caught up in {now - started:.1f}s")
            return True
        if now - started >= timeout_s:
            report(f"drain: gave up after {timeout_s:.0f}s, still behind: "
                   + (", ".join(f"{n} {lag}" for n, lag in behind.items()) or "busy"))
            return False
        if now >= next_progress:
            shown = ", ".join(f"{n} {'?' if r is None else r.lag}" for n, r in readings.items())
            report(f"drain: {now - started:4.1f}s, records behind: {shown}")
            next_progress = now + PROGRESS_EVERY_S
        time.sleep(POLL_S)
