"""A short chaos run where the harness only kills and the supervisor brings processes back.

A supervisor is started on the session's stack for the run (it watches the processes the
session started, and becomes the parent of those it restarts) and stopped afterwards, so
the rest of the session goes on unsupervised. Connect is among the targets because its
restart has a side effect the supervisor must do: deploy the connectors again.
"""

from __future__ import annotations

import pytest

from choreo.chaos.run import run_chaos
from choreo.stack import launcher
from choreo.stack.settings import StackSettings

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

TARGETS = ("payments", "orders-worker", "orders-api", "connect")


def test_the_supervisor_restarts_every_killed_process_and_every_guarantee_holds(
        running_services: StackSettings) -> None:
    lines: list[str] = []
    try:
        result = run_chaos(running_services, duration_s=30, rate=15, seed=7, targets=TARGETS,
                           report=lines.append, faults=len(TARGETS), supervised=True)
        supervision = launcher.supervisor_state(running_services)
    finally:
        launcher.stop_supervisor(running_services, report=lines.append)
        print("\n".join(lines))
    assert supervision is not None
    assert all(record.supervised and record.restart_error is None for record in result.faults)
    for target in TARGETS:
        assert supervision.processes[target].restarts >= 1, supervision.processes[target]
    failed = [check.name for check in result.checks if not check.passed]
    assert not failed, "\n".join(result.lines())
    down = [row.name for row in launcher.status(running_services) if not row.healthy]
    assert not down, f"the run left {down} down on the shared stack"
