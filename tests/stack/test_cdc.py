"""Outbox rows reach Kafka through Debezium: exactly once per commit, in order per key."""

from __future__ import annotations

import collections
import uuid

import psycopg
import pytest

from outbox.codec import EventCodec
from outbox.writer import OutboxWriter
from schemas.catalog import SchemaCatalog
from stack import launcher
from stack.settings import StackSettings
from tests.support import bump, collect, header, keyed

pytestmark = pytest.mark.stack

WRITER = OutboxWriter(EventCodec(SchemaCatalog.load()), source="tests")


def confirmed(order_id: str, total: int = 100) -> dict[str, object]:
    return {"order_id": order_id, "total_cents": total}


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
    assert header(message, "ce_dataschema").startswith("OrderConfirmed.v1#")


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


def emit_sequence(settings: StackSettings, run: str, aggregates: int, per_aggregate: int,
                  on_progress: collections.abc.Callable[[int], None] = lambda n: None) -> None:
    """Interleave aggregates so that per-key order is not simply commit order per key."""
    with psycopg.connect(settings.database_dsn("orders")) as conn:
        for sequence in range(per_aggregate):
            for aggregate in range(aggregates):
                key = f"{run}-{aggregate}"
                WRITER.emit(conn, "OrderConfirmed", key, confirmed(key, sequence))
                conn.commit()
            on_progress(sequence)


def assert_complete_and_ordered(messages: list, aggregates: int, per_aggregate: int) -> int:
    """Returns the number of duplicates (allowed after a crash, never a gap or reorder)."""
    codec = EventCodec(SchemaCatalog.load())
    seen: dict[str, list[int]] = collections.defaultdict(list)
    for message in messages:
        payload = codec.decode("OrderConfirmed", header(message, "ce_dataschema"),
                               message.value())
        seen[message.key().decode()].append(payload["total_cents"])
    assert len(seen) == aggregates
    duplicates = 0
    for key, sequence in seen.items():
        deduplicated = sorted(set(sequence))
        assert deduplicated == list(range(per_aggregate)), f"{key} lost events"
        # A restart may deliver a stretch again, but each event is first seen in order.
        first_seen = list(dict.fromkeys(sequence))
        assert first_seen == deduplicated, f"{key} out of order: {sequence}"
        duplicates += len(sequence) - len(deduplicated)
    return duplicates


def test_thousand_events_over_fifty_aggregates_arrive_in_order(
    running_stack: StackSettings,
) -> None:
    run = f"seq-{uuid.uuid4().hex[:8]}"
    emit_sequence(running_stack, run, aggregates=50, per_aggregate=20)
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

    emit_sequence(running_stack, run, aggregates=20, per_aggregate=20, on_progress=kill_halfway)
    assert registry.running("connect") is None
    launcher.up(running_stack, report=lambda line: None, with_services=False)
    messages = collect(running_stack.kafka_bootstrap, "order.events",
                       lambda m: len({(x.key(), header(x, "ce_id")) for x in m}) >= 400,
                       accept=lambda m: m.key().startswith(run.encode()), timeout_s=120,
                       settle_s=2.0)
    duplicates = assert_complete_and_ordered(messages, 20, 20)
    print(f"connect SIGKILL: 400 events, {duplicates} duplicates")
