"""Outbox rows reach Kafka through Debezium: exactly once per commit, in order per key."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import psycopg
import pytest

from choreo.stack import launcher
from choreo.stack.settings import StackSettings
from choreo.stack.slots import outbox_slot
from tests.support import (
    WRITER,
    assert_complete_and_ordered,
    bump,
    collect,
    confirmed,
    emit_confirmed,
    eventually,
    header,
    holds,
    keyed,
    read_as_cloudevent,
)

pytestmark = pytest.mark.stack

def test_committed_row_becomes_one_event_with_key_and_headers(
    running_stack: StackSettings,
) -> None:
    order_id = f"o-{uuid.uuid4()}"
    with psycopg.connect(running_stack.database_dsn("orders")) as conn:
        bump(conn)
        event_id = WRITER.emit(conn, "OrderConfirmed", order_id, confirmed(order_id))
    messages = collect(running_stack.kafka_bootstrap, "order.events", lambda m: len(m) >= 1,
                       accept=keyed(order_id), settle_s=2.0)
    assert len(messages) == 1
    message = messages[0]
    assert message.key() == order_id.encode()
    assert header(message, "ce_id") == str(event_id)
    assert header(message, "ce_type") == "OrderConfirmed"
    assert header(message, "ce_source") == "tests"
    assert header(message, "ce_specversion") == "1.0"
    assert header(message, "ce_dataschema").startswith("urn:choreo:schema:OrderConfirmed.v1#")
    assert header(message, "content-type") == "application/avro"


def test_a_cloudevents_sdk_reads_the_record_as_an_event(running_stack: StackSettings) -> None:
    """The CloudEvents SDK's Kafka binding (binary mode) on a record as Debezium sent it:
    every attribute, the Avro bytes as its data, and a dataschema that is an absolute
    URI, as the specification requires (the polling relay's records are the same header
    for header: tests/outbox/test_poller.py)."""
    order_id = f"o-{uuid.uuid4()}"
    with psycopg.connect(running_stack.database_dsn("orders")) as conn:
        event_id = WRITER.emit(conn, "OrderConfirmed", order_id, confirmed(order_id))
    message = collect(running_stack.kafka_bootstrap, "order.events", lambda m: len(m) >= 1,
                      accept=keyed(order_id))[0]
    event = read_as_cloudevent(message)  # content type, an absolute dataschema
    assert (event.get_id(), event.get_type(), event.get_source()) \
        == (str(event_id), "OrderConfirmed", "tests")
    assert urlsplit(event.get_dataschema() or "").scheme == "urn"
    assert event.get_time() is not None and event.get_time().tzinfo is not None
    data = event.get_data()  # the SDK hands non-JSON data over as text where it decodes
    assert (data.encode() if isinstance(data, str) else data) == message.value()
    assert event.get_extension("partitionkey") == order_id


def test_rolled_back_row_produces_nothing(running_stack: StackSettings) -> None:
    rolled_back, committed = f"o-{uuid.uuid4()}", f"o-{uuid.uuid4()}"
    with psycopg.connect(running_stack.database_dsn("orders")) as conn:
        WRITER.emit(conn, "OrderConfirmed", rolled_back, confirmed(rolled_back))
        conn.rollback()
        WRITER.emit(conn, "OrderConfirmed", committed, confirmed(committed))
    # The committed marker arriving proves the rolled-back one would have arrived by now.
    messages = collect(
        running_stack.kafka_bootstrap, "order.events",
        lambda m: any(x.key() == committed.encode() for x in m),
        accept=lambda m: m.key() in (rolled_back.encode(), committed.encode()), settle_s=1.0,
    )
    assert [m.key() for m in messages] == [committed.encode()]


def test_thousand_events_over_fifty_aggregates_arrive_in_order(
    running_stack: StackSettings,
) -> None:
    run = f"seq-{uuid.uuid4().hex[:8]}"
    emit_confirmed(running_stack, run, keys=50, per_key=20)
    messages = collect(running_stack.kafka_bootstrap, "order.events",
                       lambda m: len(m) >= 1000, accept=lambda m: m.key().startswith(run.encode()),
                       timeout_s=60, settle_s=1.0)
    assert len(messages) == 1000
    assert assert_complete_and_ordered(messages, 50, 20) == 0


def test_connect_killed_mid_stream_loses_nothing(running_stack: StackSettings) -> None:
    run = f"kill-{uuid.uuid4().hex[:8]}"
    registry = launcher.registry_for(running_stack)

    def kill_halfway(sequence: int) -> None:
        if sequence == 10:
            registry.kill("connect")

    emit_confirmed(running_stack, run, keys=20, per_key=20, on_progress=kill_halfway)
    assert registry.running("connect") is None
    launcher.up(running_stack, report=lambda line: None, with_services=False)
    messages = collect(running_stack.kafka_bootstrap, "order.events",
                       lambda m: len({(x.key(), header(x, "ce_id")) for x in m}) >= 400,
                       accept=lambda m: m.key().startswith(run.encode()), timeout_s=120,
                       settle_s=2.0)
    duplicates = assert_complete_and_ordered(messages, 20, 20)
    print(f"connect SIGKILL: 400 events, {duplicates} duplicates")


def test_an_idle_databases_slot_keeps_up_with_the_wal(running_stack: StackSettings) -> None:
    """PostgreSQL keeps every WAL byte a slot has not confirmed, whichever database wrote
    it, so one quiet database would pin the cluster's WAL. Its connector's heartbeats must
    move the slot: Connect commits an offset only for a record it produced, and while a
    transform dropped the heartbeats, the slot of a database without outbox writes stayed
    where its last event left it (here, 10 minutes and 20 MB behind)."""
    slot, _ = outbox_slot(running_stack, "users")
    with psycopg.connect(running_stack.database_dsn("users"), autocommit=True) as conn:
        now = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]

        def confirmed_now() -> bool:
            return bool(conn.execute(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots"
                " WHERE slot_name = %s", (now, slot)).fetchone()[0])  # type: ignore[index]

        eventually(lambda: holds(confirmed_now()), 45)  # heartbeats every 10 s
