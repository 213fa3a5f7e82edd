"""A chaos run is quiescent only once every outbox's relay has published what it holds.

Seen in CI: a Connect restarted under load published 47 OrderRejected events after the
run had been declared quiescent (every saga settled in its database, every consumer at
the end of its topics), and the customers of those orders looked never told. Here the
orders database's relay is held (its connector paused, or the polling relay stopped by
its pid) while nothing else is in flight: the run must not look quiescent until it goes
on.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from choreo.chaos.quiescence import wait_quiescent
from choreo.stack import launcher
from choreo.stack.relays import relay_name
from choreo.stack.settings import StackSettings
from choreo.testkit.observer import Observer
from choreo.testkit.shop import Shop
from tests.support import eventually, holds

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

DATABASE = "orders"


@contextmanager
def relay_held(settings: StackSettings, database: str) -> Iterator[None]:
    if settings.relay_mode(database) == "cdc":
        url = f"{settings.connect_url}/connectors/{database}-outbox"

        def state(expected: str) -> bool:
            status = requests.get(f"{url}/status", timeout=10).json()
            return all(part["state"] == expected
                       for part in [status["connector"], *status["tasks"]])

        requests.put(f"{url}/pause", timeout=10).raise_for_status()
        try:
            eventually(lambda: holds(state("PAUSED")), 30)
            yield
        finally:
            requests.put(f"{url}/resume", timeout=10).raise_for_status()
            eventually(lambda: holds(state("RUNNING")), 60)
    else:
        relay = launcher.registry_for(settings).running(relay_name(database))
        assert relay is not None, f"no {relay_name(database)} process"
        os.kill(relay.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(relay.pid, signal.SIGCONT)


def test_a_run_is_not_quiescent_while_an_outbox_is_not_relayed(
        running_services: StackSettings) -> None:
    observer = Observer(running_services, Shop(running_services),
                        f"quiet-{uuid.uuid4().hex[:8]}", [])
    lines: list[str] = []
    with relay_held(running_services, DATABASE):
        assert wait_quiescent(observer, 0, time.monotonic(), 5.0, lines.append) is None
    assert f"{DATABASE}'s outbox not relayed" in lines[-1], lines
    assert wait_quiescent(observer, 0, time.monotonic(), 60.0, lines.append) is not None, lines
