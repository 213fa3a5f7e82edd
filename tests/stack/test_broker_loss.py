"""A SIGKILLed embedded broker loses its in-memory log; a restart loses no committed event.

Runs late in the suite on purpose (the broker is shared): every consumer of the suite
must also cope, reading the new log from its start (see outbox/assignment.py).
"""

from __future__ import annotations

import time
import uuid

import pytest

from stack import launcher
from stack.settings import StackSettings
from tests.support import assert_complete_and_ordered, collect, emit_confirmed

pytestmark = pytest.mark.stack


def test_broker_sigkill_loses_nothing_committed_within_the_retention_window(
    running_stack: StackSettings,
) -> None:
    run = f"loss-{uuid.uuid4().hex[:8]}"
    registry = launcher.registry_for(running_stack)
    emit_confirmed(running_stack, run, keys=10, per_key=5)  # published, maybe read
    collect(running_stack.kafka_bootstrap, "order.events",
            lambda m: len(m) >= 50, accept=lambda m: m.key().startswith(run.encode()),
            timeout_s=60)
    registry.kill("broker")
    # Committed while the broker is gone: Debezium cannot publish them yet.
    emit_confirmed(running_stack, f"{run}-down", keys=10, per_key=5)
    started = time.monotonic()
    lines: list[str] = []
    launcher.up(running_stack, report=lines.append, with_services=False)
    print(f"\nbroker SIGKILL -> stack up again in {time.monotonic() - started:.1f}s: {lines}")
    before = collect(running_stack.kafka_bootstrap, "order.events",
                     lambda m: len({x.key() + x.value() for x in m}) >= 50,
                     accept=lambda m: m.key().startswith(f"{run}-".encode())
                     and not m.key().startswith(f"{run}-down".encode()),
                     timeout_s=90, settle_s=1.0)
    during = collect(running_stack.kafka_bootstrap, "order.events",
                     lambda m: len({x.key() + x.value() for x in m}) >= 50,
                     accept=lambda m: m.key().startswith(f"{run}-down".encode()),
                     timeout_s=90, settle_s=1.0)
    duplicates = (assert_complete_and_ordered(before, 10, 5)
                  + assert_complete_and_ordered(during, 10, 5))
    print(f"broker SIGKILL: 100 events committed around the loss, all back;"
          f" {duplicates} duplicates")
