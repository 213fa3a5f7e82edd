"""Kafka Connect on the embedded stack loses no committed outbox row and does not wedge.

Each test breaks something for real (offsets file deleted, slot dropped, SIGKILL of
PostgreSQL's postmaster or of the Connect JVM), commits rows while it is broken, brings
the part back the way the launcher or a supervisor would, and then reads every row's
event off its topic. Duplicates are allowed (the consumers' inboxes absorb them) and
printed; a missing row fails the test. Every test leaves Connect, its connectors and
PostgreSQL running again, also when it fails.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka import Message

from choreo.stack import launcher, manifest
from choreo.stack.cdc import ensure_connect
from choreo.stack.components import connect_offsets_file, postgres_component
from choreo.stack.connectors import (
    OUTBOX_TEMPLATE,
    ConnectClient,
    deploy,
    render,
    restart_failed_tasks,
    states_of,
    template_values,
)
from choreo.stack.settings import StackSettings
from choreo.stack.slots import ensure_outbox_slots, outbox_slot
from tests.support import WRITER, collect, header

pytestmark = pytest.mark.stack

RUNNING_BOUND_S = 60.0
"""How long, at most, from the fault to every task RUNNING again (2 shared cores)."""


def commit_rows(settings: StackSettings, run: str, count: int, start: int = 0) -> list[str]:
    """``count`` OrderConfirmed rows in the orders database, one commit each; their keys."""
    keys = [f"{run}-{n}" for n in range(start, start + count)]
    with psycopg.connect(settings.database_dsn("orders")) as conn:
        for key in keys:
            WRITER.emit(conn, "OrderConfirmed", key, {"order_id": key, "total_cents": 1})
            conn.commit()
    return keys


def arrived(settings: StackSettings, run: str, keys: list[str],
            timeout_s: float = 60.0) -> tuple[set[str], int]:
    """The keys of ``run`` seen on order.events, and how many events came twice or more."""
    wanted = set(keys)

    def complete(messages: list[Message]) -> bool:
        return wanted <= {m.key().decode() for m in messages}

    messages = collect(settings.kafka_bootstrap, "order.events", complete,
                       accept=lambda m: m.key().decode().startswith(f"{run}-"),
                       timeout_s=timeout_s, settle_s=1.0)
    ids = [header(m, "ce_id") for m in messages]
    return {m.key().decode() for m in messages}, len(ids) - len(set(ids))


def all_running(client: ConnectClient) -> bool:
    statuses = client.statuses()
    return set(statuses) >= {f"{db}-outbox" for db in manifest.databases(outbox=True)} and all(
        status.get("tasks") and all(state == "RUNNING" for state in states_of(status))
        for status in statuses.values()
    )


def drop_slot_once_released(dsn: str, slot: str, timeout_s: float = 20.0) -> None:
    """The walsender of a stopped worker lets go of its slot a moment after the worker."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                           (slot,)).fetchone() == (True,):
            assert time.monotonic() < deadline, f"slot {slot} still active"
            time.sleep(0.1)
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


@pytest.fixture
def connect_restored(running_stack: StackSettings) -> Iterator[StackSettings]:
    """Whatever a test broke, PostgreSQL, Connect and the connectors run again after it."""
    try:
        yield running_stack
    finally:
        launcher.up(running_stack, report=lambda line: None, with_services=False)


def test_rows_committed_while_connect_is_down_and_its_offsets_lost_arrive(
    connect_restored: StackSettings,
) -> None:
    settings = connect_restored
    run = f"nooffsets-{uuid.uuid4().hex[:8]}"
    before = commit_rows(settings, run, 5)
    assert arrived(settings, run, before)[0] == set(before)

    registry = launcher.registry_for(settings)
    assert registry.stop("connect")
    connect_offsets_file(settings).unlink()
    during = commit_rows(settings, run, 20, start=5)
    ensure_connect(settings, report=lambda line: None)

    seen, duplicates = arrived(settings, run, before + during)
    missing = sorted(set(during) - seen)
    print(f"offsets lost: {len(during)} rows committed while Connect was down,"
          f" {len(during) - len(missing)} arrived, {duplicates} duplicates")
    assert not missing, f"lost while Connect had no offsets: {missing}"


def test_rows_committed_before_the_connectors_first_start_arrive(
    connect_restored: StackSettings,
) -> None:
    """A fresh stack in miniature: no slot, no offsets, no connector; then the migration
    step, a service writing, and only then the connector's first start."""
    settings = connect_restored
    slot, _ = outbox_slot(settings, "orders")
    registry = launcher.registry_for(settings)
    registry.stop("connect")
    connect_offsets_file(settings).unlink(missing_ok=True)
    drop_slot_once_released(settings.database_dsn("orders"), slot)

    assert ensure_outbox_slots(settings) == [slot]
    run = f"firststart-{uuid.uuid4().hex[:8]}"
    keys = commit_rows(settings, run, 10)
    ensure_connect(settings, report=lambda line: None)

    seen, duplicates = arrived(settings, run, keys)
    print(f"first start: {len(keys)} rows committed before it, {len(seen)} arrived,"
          f" {duplicates} duplicates")
    assert seen == set(keys)


def test_migration_creates_every_slot_with_the_connectors_plugin(
    running_stack: StackSettings,
) -> None:
    for database in manifest.databases(outbox=True):
        slot, plugin = outbox_slot(running_stack, database)
        with psycopg.connect(running_stack.database_dsn(database)) as conn:
            row = conn.execute(
                "SELECT plugin, database FROM pg_replication_slots WHERE slot_name = %s",
                (slot,),
            ).fetchone()
        assert row == (plugin, database)
    assert ensure_outbox_slots(running_stack) == []


def test_postgres_sigkill_tasks_come_back_and_rows_arrive(
    connect_restored: StackSettings,
) -> None:
    """Rows committed right after the restart arrive; Debezium notices the lost stream
    only seconds later, so "every task RUNNING" alone would prove nothing. A thread
    plays the supervisor, calling ``restart_failed_tasks`` every 0.5 s."""
    settings = connect_restored
    registry = launcher.registry_for(settings)
    client = ConnectClient(settings.connect_url)
    restarted: list[str] = []
    done = threading.Event()

    def supervise() -> None:
        while not done.wait(0.5):
            restarted.extend(restart_failed_tasks(settings))

    supervisor = threading.Thread(target=supervise, daemon=True)
    killed_at = time.monotonic()
    registry.kill("postgres")
    supervisor.start()
    try:
        launcher.start_component(postgres_component(settings), registry, settings,
                              report=lambda line: None)
        postgres_back = time.monotonic() - killed_at
        run = f"pgkill-{uuid.uuid4().hex[:8]}"
        keys = commit_rows(settings, run, 20)
        seen, duplicates = arrived(settings, run, keys, timeout_s=RUNNING_BOUND_S)
        arrived_after = time.monotonic() - killed_at - 1.0  # minus collect's settle time
        while not all_running(client):
            assert time.monotonic() - killed_at < RUNNING_BOUND_S, client.statuses()
            time.sleep(0.25)
    finally:
        done.set()
        supervisor.join()
    print(f"postgres SIGKILL: back in {postgres_back:.1f}s; {len(seen)}/{len(keys)} rows"
          f" committed after it arrived {arrived_after:.1f}s after the kill, {duplicates}"
          f" duplicates; failed parts restarted: {restarted or 'none'}")
    assert seen == set(keys)


def failing_fast(settings: StackSettings, client: ConnectClient) -> list[dict[str, Any]]:
    """The outbox connectors deployed with Debezium's retries off; returns their configs.

    Debezium 3.6 retries a lost PostgreSQL connection for as long as it takes (the
    template's ``errors.max.retries=-1``), so its tasks no longer fail while PostgreSQL
    is down (3.0.7's did). A task that fails is still possible (a dropped publication,
    an error Debezium does not retry): this is how a test gets one. ``connect_restored``
    deploys the template again afterwards."""
    rendered = [render(OUTBOX_TEMPLATE, template_values(settings, db))
                for db in manifest.databases(outbox=True)]
    for connector in rendered:
        connector["config"]["errors.max.retries"] = "0"
    deploy(client, rendered, lambda line: None)
    return rendered


def fail_tasks_by_stopping_postgres(settings: StackSettings, client: ConnectClient) -> None:
    """SIGKILL the postmaster and keep it down until a task without retries has failed."""
    launcher.registry_for(settings).kill("postgres")
    deadline = time.monotonic() + RUNNING_BOUND_S
    while not any(state == "FAILED" for status in client.statuses().values()
                  for state in states_of(status)):
        assert time.monotonic() < deadline, "no task failed with PostgreSQL down"
        time.sleep(0.5)


def test_restart_failed_tasks_names_and_restarts_what_failed(
    connect_restored: StackSettings,
) -> None:
    settings = connect_restored
    client = ConnectClient(settings.connect_url)
    failing_fast(settings, client)
    fail_tasks_by_stopping_postgres(settings, client)
    registry = launcher.registry_for(settings)
    launcher.start_component(postgres_component(settings), registry, settings,
                          report=lambda line: None)
    restarted = restart_failed_tasks(settings)
    print(f"restart_failed_tasks: {restarted}")
    assert restarted and all(part.endswith("-outbox/0") for part in restarted)
    deadline = time.monotonic() + RUNNING_BOUND_S
    while not all_running(client):  # another task's own retry may fail just before
        assert time.monotonic() < deadline, client.statuses()
        restart_failed_tasks(settings)
        time.sleep(0.5)
    assert restart_failed_tasks(settings) == []


def test_up_restarts_tasks_that_failed_while_postgres_was_down(
    connect_restored: StackSettings,
) -> None:
    """``choreo up`` used to stop at the first FAILED task; now it restarts it. (The
    deployment ``up`` runs, given the configs deployed, so that it changes none.)"""
    settings = connect_restored
    registry = launcher.registry_for(settings)
    client = ConnectClient(settings.connect_url)
    deployed = failing_fast(settings, client)
    fail_tasks_by_stopping_postgres(settings, client)
    launcher.start_component(postgres_component(settings), registry, settings,
                          report=lambda line: None)
    lines: list[str] = []
    assert not deploy(client, deployed, lines.append)  # nothing redeployed: restarted
    assert all_running(client)
    print("up after failed tasks: " + "; ".join(lines))
    assert any("restart" in line for line in lines)


def test_connect_sigkill_back_running_and_rows_committed_meanwhile_arrive(
    connect_restored: StackSettings,
) -> None:
    settings = connect_restored
    registry = launcher.registry_for(settings)
    run = f"connectkill-{uuid.uuid4().hex[:8]}"
    killed_at = time.monotonic()
    registry.kill("connect")
    keys = commit_rows(settings, run, 20)
    ensure_connect(settings, report=lambda line: None)
    running_after = time.monotonic() - killed_at

    seen, duplicates = arrived(settings, run, keys)
    print(f"connect SIGKILL: every task RUNNING {running_after:.1f}s after the kill;"
          f" {len(seen)}/{len(keys)} rows committed meanwhile arrived, {duplicates} duplicates")
    assert seen == set(keys)
    assert running_after < RUNNING_BOUND_S
