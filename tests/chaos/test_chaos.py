"""A short chaos run on the shared test stack: every process type SIGKILLed once, mid-saga.

Six faults over 40 s of orders (inventory, payments, orders-worker, orders-api, psp and
Kafka Connect, in the seed's order), then every invariant of docs/chaos.md must hold. The
run restarts whatever it killed, and the test checks that, because the stack is shared
with the rest of the session.
"""

from __future__ import annotations

import pytest

from chaos.plan import TARGETS
from chaos.run import run_chaos
from stack import launcher
from stack.settings import StackSettings

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]


def test_every_guarantee_holds_while_each_process_type_is_killed(
        running_services: StackSettings) -> None:
    lines: list[str] = []
    try:
        result = run_chaos(running_services, duration_s=40, rate=20, seed=2024,
                           targets=TARGETS, report=lines.append, faults=len(TARGETS))
    finally:
        print("\n".join(lines))
    down = [row.name for row in launcher.status(running_services) if not row.healthy]
    assert not down, f"the chaos run left {down} down on the shared stack"
    assert sorted(record.fault.target for record in result.faults) == sorted(TARGETS)
    assert all(record.pid is not None for record in result.faults)
    assert len(result.orders) >= 800
    failed = [check.name for check in result.checks if not check.passed]
    assert not failed, "\n".join(result.lines())
