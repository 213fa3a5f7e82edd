"""A short chaos run on the shared test stack: every process type SIGKILLed once, mid-saga.

Six faults over 40 s of orders (inventory, payments, orders-worker, orders-api, psp and
Kafka Connect, in the seed's order), then every invariant of docs/chaos.md must hold. The
run restarts whatever it killed, and the test checks that, because the stack is shared
with the rest of the session.
"""

from __future__ import annotations

import pytest

from choreo.chaos.plan import default_targets
from choreo.stack.settings import StackSettings
from tests.support import chaos_checked

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900)]


def test_every_guarantee_holds_while_each_process_type_is_killed(
        running_services: StackSettings) -> None:
    # 10/s: the grown saga settles about 14/s on these two cores (docs/benchmarks.md); a
    # load past that tests overload, not recovery from a crash.
    result = chaos_checked(running_services, default_targets(), duration_s=40, rate=10, seed=2024)
    assert len(result.orders) >= 400
