"""A SIGKILLed embedded broker loses its in-memory log; a restart loses no committed event.

Runs late in the suite on purpose (the broker is shared): every consumer of the suite
must also cope, reading the new log from its start (see outbox/assignment.py).
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from outbox import inbox
from stack import launcher
from stack.settings import StackSettings
from tests.outbox.probe import assert_each_once, effects, prepare, probe_runtime
from tests.support import assert_complete_and_ordered, collect, emit_confirmed

pytestmark = pytest.mark.stack


def test_broker_sigkill_loses_nothing_committed_within_the_retention_window(
    running_stack: StackSettings,
) -> None:
    """A consumer of the stack (its tables in the orders database, where the recovery looks
    for subscriptions) handles 50 events; a second one, subscribed too, has handled none
    of them; the broker is SIGKILLed; 50 more are committed while it is down. After ``up``
    both have handled all 100 exactly once, in order per key (the second gets the 50
    from before the loss only because they were published again for it), and the 50
    committed during the loss are all in the new log."""
    run, consumer = f"loss-{uuid.uuid4().hex[:8]}", f"probe-loss-{uuid.uuid4().hex[:8]}"
    late = f"{consumer}-late"  # subscribed, but had handled nothing when the broker died
    database = running_stack.database_dsn("orders")
    prepare(database)
    registry = launcher.registry_for(running_stack)
    try:
        emit_confirmed(running_stack, run, keys=10, per_key=5)
        probe_runtime(running_stack.kafka_bootstrap, database, consumer, run).run(
            idle_exit_s=3.0)
        assert len(effects(database, consumer)) == 50
        with psycopg.connect(database, autocommit=True) as conn:
            inbox.subscribe(conn, late, ["OrderConfirmed"])
        registry.kill("broker")
        emit_confirmed(running_stack, f"{run}-down", keys=10, per_key=5)  # Debezium can't yet
        started = time.monotonic()
        lines: list[str] = []
        launcher.up(running_stack, report=lines.append, with_services=False)
        print(f"\nbroker SIGKILL -> stack up again in {time.monotonic() - started:.1f}s: {lines}")
        during = collect(running_stack.kafka_bootstrap, "order.events",
                         lambda m: len({x.key() + x.value() for x in m}) >= 50,
                         accept=lambda m: m.key().startswith(f"{run}-down".encode()),
                         timeout_s=90, settle_s=1.0)
        duplicates = assert_complete_and_ordered(during, 10, 5)
        probe_runtime(running_stack.kafka_bootstrap, database, consumer, run).run(
            idle_exit_s=3.0)
        probe_runtime(running_stack.kafka_bootstrap, database, late, run).run(idle_exit_s=3.0)
        for reader in (consumer, late):
            handled = effects(database, reader)
            assert_each_once([e for e in handled if not e[0].startswith(f"{run}-down")], 10, 5)
            assert_each_once([e for e in handled if e[0].startswith(f"{run}-down")], 10, 5)
        print(f"broker SIGKILL: 100 events committed around the loss, each handled once;"
              f" {duplicates} duplicates in the new log")
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            for reader in (consumer, late):
                inbox.unsubscribe(conn, reader)  # gone: no longer a reader to wait for
