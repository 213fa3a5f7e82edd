"""``choreo connectors slots|deploy`` for a Connect cluster of one's own: the slot comes
first, so what the services commit before the connector ever runs is still published."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from choreo.cli.main import main as choreo
from choreo.outbox.runner import apply_schema
from choreo.outbox.wire import OUTBOX_DDL
from choreo.stack.connectors import ConnectClient
from choreo.stack.settings import StackSettings
from tests.support import WRITER, collect, confirmed, scratch_database

pytestmark = pytest.mark.stack


def drop_slot(dsn: str, slot: str, timeout_s: float = 20.0) -> None:
    """The connector's walsender lets go of the slot a moment after it is deleted."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            try:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM"
                             " pg_replication_slots WHERE slot_name = %s", (slot,))
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def test_a_commit_between_slots_and_deploy_is_published(running_stack: StackSettings,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    database = f"own_{uuid.uuid4().hex[:8]}"
    dsn = scratch_database(running_stack, database)
    apply_schema(dsn, OUTBOX_DDL)
    where = ["--connect-url", running_stack.connect_url, "--postgres-port",
             str(running_stack.postgres_port), "--databases", database]
    slot, key = f"choreo_{database}_outbox", f"{database}-order"
    try:
        assert choreo(["connectors", "slots", *where]) == 0
        assert f"slot {slot} created in {database}" in capsys.readouterr().out
        with psycopg.connect(dsn) as conn:  # a service writes before any connector exists
            WRITER.emit(conn, "OrderConfirmed", key, confirmed(key))
        assert choreo(["connectors", "deploy", *where]) == 0
        assert f"slot {slot} already there" in capsys.readouterr().out
        found = collect(running_stack.kafka_bootstrap, "order.events", lambda m: len(m) >= 1,
                        accept=lambda m: m.key() == key.encode(), timeout_s=60)
        assert len(found) == 1
    finally:
        try:
            ConnectClient(running_stack.connect_url).delete(f"{database}-outbox")
        finally:
            drop_slot(dsn, slot)
            with psycopg.connect(running_stack.database_dsn("postgres"),
                                 autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
