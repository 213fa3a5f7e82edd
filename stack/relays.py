"""Which relay carries each outbox database to Kafka: Debezium (``cdc``) or the poller.

``CHOREO_RELAY`` chooses, per database (``StackSettings.relay_mode``). ``choreo up`` makes
the stack match it, in both directions and on a running stack:

- a database in **polling** mode gets a ``relay-<database>`` process (``python -m
  outbox.poller``), supervised and tracked by pid like every other process; its Debezium
  connector is removed (stopped, its offsets reset, deleted) and its replication slot
  dropped, so the slot does not pin WAL while nobody reads it;
- a database in **cdc** mode that was polled before gets its relay stopped, its slot
  created again (the migration step), then what the relay had not published yet is
  published from the table (``outbox.poller.catch_up``), and only then its connector
  deployed. Every row is in the new slot or published by the catch-up, or both
  (duplicates, which the inboxes absorb).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import psycopg
import requests

from choreo.outbox.poller import catch_up, lock_holders
from choreo.outbox.relay import relay_producer
from choreo.outbox.wire import OUTBOX_TEMPLATE, render
from choreo.stack.components import Component, quietly
from choreo.stack.connectors import ConnectClient, template_values
from choreo.stack.errors import ConnectorError
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings
from choreo.stack.slots import outbox_slot

Report = Callable[[str], None]


def relay_name(database: str) -> str:
    return f"relay-{database}"


def relay_component(settings: StackSettings, database: str) -> Component:
    dsn = settings.database_dsn(database)

    def healthy() -> bool:
        with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            return lock_holders(conn) == 1

    env = {"CHOREO_DATABASE_URL": dsn, **settings.kafka_env()}
    return Component(relay_name(database), 0, [sys.executable, "-m", "choreo.outbox.poller"],
                     quietly(healthy), env=env)


def relay_components(settings: StackSettings) -> list[Component]:
    return [relay_component(settings, db) for db in settings.databases_relayed_by("polling")]


def remove_connector(settings: StackSettings, database: str, report: Report) -> bool:
    """Stop the database's connector, reset its offsets and delete it.

    The offsets go too, so that a later return to CDC starts at the new slot's position
    rather than at an LSN the dropped slot no longer has (Debezium then fails: "trying to
    read change stream starting at ... no longer available"). A standalone worker forgets
    its connectors when it stops but keeps their offsets in its file, so a connector that
    is not deployed (the first ``up`` in polling mode after a ``down``) is created in the
    STOPPED state (KIP-980) just to reset them (KIP-875). Returns whether a deployed
    connector was removed.
    """
    client = ConnectClient(settings.connect_url, timeout_s=10.0)
    name = f"{database}-outbox"
    try:
        deployed = client.config(name) is not None
    except (requests.ConnectionError, requests.Timeout):
        return False  # Connect is down: the next start of the stack comes here again
    if deployed:
        requests.put(f"{client.base_url}/connectors/{name}/stop", timeout=10)
    else:
        config = render(OUTBOX_TEMPLATE, template_values(settings, database))["config"]
        answered(requests.post(f"{client.base_url}/connectors", timeout=30, json={
            "name": name, "config": config, "initial_state": "STOPPED"}), name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.status(name) or {}
        if status.get("connector", {}).get("state") == "STOPPED":
            break
        time.sleep(0.2)
    answered(requests.delete(f"{client.base_url}/connectors/{name}/offsets", timeout=10), name)
    client.delete(name)
    if deployed:
        report(f"connector  {name} removed: {database} is relayed by polling")
    return deployed


def answered(response: requests.Response, name: str) -> None:
    if not response.ok:
        raise ConnectorError(f"resetting {name}'s offsets failed: {response.status_code}"
                             f" {response.text[:1000]}")


def drop_slot(settings: StackSettings, database: str, timeout_s: float = 30.0) -> bool:
    """Drop the database's replication slot, waiting for its walsender to go."""
    slot, _ = outbox_slot(settings, database)
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(settings.database_dsn(database), autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                               (slot,)).fetchone()
            if row is None:
                return False
            if not row[0]:
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    return True
                except psycopg.errors.ObjectInUse:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"replication slot {slot} is still in use")
            time.sleep(0.2)


def retire_cdc(settings: StackSettings, report: Report) -> bool:
    """Databases in polling mode: no connector, no slot. Returns whether anything changed."""
    changed = False
    for database in settings.databases_relayed_by("polling"):
        changed |= remove_connector(settings, database, report)
        if drop_slot(settings, database):
            report(f"slot       {outbox_slot(settings, database)[0]} dropped")
            changed = True
    return changed


def retire_polling(settings: StackSettings, registry: ProcessRegistry, report: Report) -> bool:
    """Databases in cdc mode: no relay; publish what a relay left behind (its slot exists)."""
    changed = False
    producer = None
    for database in settings.databases_relayed_by("cdc"):
        name = relay_name(database)
        if registry.running(name):
            registry.stop(name)
            report(f"{name:<13} stopped: {database} is relayed by CDC")
            changed = True
        producer = producer or relay_producer(settings.kafka)
        published = catch_up(settings.database_dsn(database), producer)
        if published is not None:
            report(f"{name:<13} handed {database} to CDC; published {published} events"
                   " it had not yet")
            changed = True
    return changed
