"""The broker's log: a SIGKILL loses nothing and needs no republish; a deleted data folder
is a new log, which gets the outbox window, also when its first republish fails.

Runs late in the suite on purpose (the broker is shared): every consumer of the suite
must also cope with a new log, reading it from its start (see outbox/assignment.py).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest

from choreo.outbox import inbox
from choreo.stack import broker, launcher, recovery
from choreo.stack.settings import StackSettings
from tests.outbox.probe import assert_each_once, effects, prepare, probe_runtime
from tests.support import assert_complete_and_ordered, collect, emit_confirmed

pytestmark = pytest.mark.stack


def kill_only(settings: StackSettings) -> None:
    launcher.registry_for(settings).kill("broker")


def kill_and_delete_log(settings: StackSettings) -> None:
    launcher.registry_for(settings).kill("broker")
    shutil.rmtree(broker.data_dir(settings))


@pytest.mark.parametrize(("fault", "republished"), [(kill_only, False),
                                                    (kill_and_delete_log, True)],
                         ids=["sigkill", "sigkill-and-log-folder-deleted"])
def test_broker_loss_loses_nothing_committed_within_the_retention_window(
    running_stack: StackSettings, fault: Callable[[StackSettings], None], republished: bool,
) -> None:
    """A consumer of the stack (its tables in the orders database, where the recovery looks
    for subscriptions) handles 50 events; a second one, subscribed too, has handled none
    of them; the broker is SIGKILLed (and, in the second case, its data folder deleted);
    50 more are committed while it is down. After ``up`` both have handled all 100
    exactly once, in order per key, and the 50 committed during the loss are all in the
    log. A SIGKILL keeps the log, so nothing is published again; a deleted log is
    refilled from the outbox window, which is the only way the second consumer can get
    the first 50 then."""
    run, consumer = f"loss-{uuid.uuid4().hex[:8]}", f"probe-loss-{uuid.uuid4().hex[:8]}"
    late = f"{consumer}-late"  # subscribed, but had handled nothing when the broker died
    database = running_stack.database_dsn("orders")
    prepare(database)
    try:
        emit_confirmed(running_stack, run, keys=10, per_key=5)
        probe_runtime(running_stack.kafka_bootstrap, database, consumer, run).run(
            idle_exit_s=3.0)
        assert len(effects(database, consumer)) == 50
        with psycopg.connect(database, autocommit=True) as conn:
            inbox.subscribe(conn, late, ["OrderConfirmed"])
        fault(running_stack)
        emit_confirmed(running_stack, f"{run}-down", keys=10, per_key=5)  # Debezium can't yet
        started = time.monotonic()
        lines: list[str] = []
        launcher.up(running_stack, report=lines.append, with_services=False)
        print(f"\nbroker {fault.__name__} -> stack up again in"
              f" {time.monotonic() - started:.1f}s: {lines}")
        assert any("re-published" in line for line in lines) == republished, lines
        assert not recovery.log_needs_window(running_stack)
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
        print(f"broker {fault.__name__}: 100 events committed around the loss, each handled"
              f" once; {duplicates} duplicates in the log")
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            for reader in (consumer, late):
                inbox.unsubscribe(conn, reader)  # gone: no longer a reader to wait for


def test_a_new_log_whose_republish_failed_gets_it_at_the_next_start(
    running_stack: StackSettings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window of a new log is owed until a republish completes: one that fails (here
    PostgreSQL's answer, faked; in life also Ctrl-C during ``up``) leaves the broker
    running with the marker still there, and the next start, which finds the broker
    running, publishes the window then. Before the marker, only the start that launched
    the broker republished, so the next ``up`` forgot the window for good."""
    recovery.note_new_log(running_stack)  # what formatting a new log writes first

    def unreachable(*args: object, **kwargs: object) -> None:
        raise psycopg.OperationalError("connection refused (test)")

    with monkeypatch.context() as patched:
        patched.setattr(recovery, "republish_window", unreachable)
        with pytest.raises(psycopg.OperationalError):
            launcher.start_broker(running_stack, launcher.registry_for(running_stack),
                                  lambda line: None)
    assert recovery.log_needs_window(running_stack)
    lines: list[str] = []
    launcher.up(running_stack, report=lines.append, with_services=False)
    assert any("re-published" in line for line in lines), lines
    assert not recovery.log_needs_window(running_stack)
