"""Poison and failing events go to the dead-letter topic; only their own key waits."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from outbox import deadletter
from outbox.kafka import build_producer
from stack.settings import StackSettings
from tests.outbox.probe import effects, probe_runtime
from tests.support import WRITER, collect, emit_confirmed, header

pytestmark = pytest.mark.stack


def emit(settings: StackSettings, key: str, values: list[int]) -> None:
    with psycopg.connect(settings.database_dsn("orders")) as conn:
        for value in values:
            WRITER.emit(conn, "OrderConfirmed", key, {"order_id": key, "total_cents": value})
            conn.commit()


def test_failing_event_blocks_only_its_key_until_replayed(
    running_stack: StackSettings, probe_database: str
) -> None:
    run, consumer = f"dlq-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    broken_key, healthy_key = f"{run}-broken", f"{run}-healthy"
    failing = {13}
    emit(running_stack, broken_key, [1, 13, 2, 3])
    emit(running_stack, healthy_key, [1, 2, 3])
    runtime = probe_runtime(running_stack.kafka_bootstrap, probe_database, consumer, run,
                            failing=failing)
    runtime.run(idle_exit_s=3.0)

    assert [v for k, v in effects(probe_database, consumer) if k == healthy_key] == [1, 2, 3]
    assert [v for k, v in effects(probe_database, consumer) if k == broken_key] == [1]
    # Poison messages other tests left on the topic are dead-lettered too: look at ours.
    dead = collect(running_stack.kafka_bootstrap, deadletter.dead_letter_topic(consumer),
                   lambda m: len(m) >= 1, accept=lambda m: m.key().startswith(run.encode()),
                   settle_s=1.0)
    assert len(dead) == 1
    assert dead[0].key() == broken_key.encode()
    assert header(dead[0], "dlq_reason").startswith("gave up after 3 attempts")
    assert header(dead[0], "dlq_attempts") == "3"
    assert header(dead[0], "dlq_consumer") == consumer
    assert header(dead[0], "ce_type") == "OrderConfirmed"

    with psycopg.connect(probe_database, autocommit=True) as conn:
        entries = [e for e in deadletter.list_entries(conn)
                   if e.consumer == consumer and e.aggregate_key.startswith(run)]
        assert [(e.status, e.delivery.key) for e in entries] == [
            ("dead", broken_key), ("parked", broken_key), ("parked", broken_key)]
        failing.clear()  # the bug is fixed; now replay
        deadletter.request(conn, entries[0].seq, "replay")

    # More events for the key arrive while it is still blocked: they queue up behind.
    emit(running_stack, broken_key, [4])
    runtime = probe_runtime(running_stack.kafka_bootstrap, probe_database, consumer, run)
    runtime.run(idle_exit_s=3.0)
    assert [v for k, v in effects(probe_database, consumer) if k == broken_key] == [1, 13, 2, 3, 4]
    with psycopg.connect(probe_database, autocommit=True) as conn:
        assert not {k for k in deadletter.blocked_keys(conn, consumer) if k.startswith(run)}


def test_poison_messages_are_dead_lettered_with_reason(
    running_stack: StackSettings, probe_database: str
) -> None:
    run, consumer = f"poison-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    good = collect_reference(running_stack, run)
    producer = build_producer(running_stack.kafka_bootstrap)
    garbage_headers = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"OrderConfirmed"),
                       ("ce_dataschema", header(good, "ce_dataschema").encode())]
    producer.produce("order.events", key=f"{run}-garbage", value=b"\xff\xfe",
                     headers=garbage_headers)
    producer.produce("order.events", key=f"{run}-headless", value=good.value())
    unknown = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"OrderConfirmed"),
               ("ce_dataschema", b"OrderConfirmed.v9#0000000000000000")]
    producer.produce("order.events", key=f"{run}-unknown", value=good.value(), headers=unknown)
    producer.flush(10)
    emit_confirmed(running_stack, run, keys=1, per_key=1)

    runtime = probe_runtime(running_stack.kafka_bootstrap, probe_database, consumer, run)
    stopper = threading.Timer(60, runtime.stop_event.set)
    stopper.start()
    try:
        runtime.run(idle_exit_s=3.0)
    finally:
        stopper.cancel()
    reasons = {m.key().decode(): header(m, "dlq_reason") for m in collect(
        running_stack.kafka_bootstrap, deadletter.dead_letter_topic(consumer),
        lambda m: len(m) >= 3, accept=lambda m: m.key().startswith(run.encode()),
        settle_s=1.0)}
    assert reasons[f"{run}-garbage"].startswith("cannot decode OrderConfirmed")
    assert reasons[f"{run}-headless"] == "missing or malformed ce_id/ce_type headers"
    assert reasons[f"{run}-unknown"].startswith("unknown writer schema")
    assert (f"{run}-0", 0) in effects(probe_database, consumer)


def collect_reference(settings: StackSettings, run: str):  # noqa: ANN201
    """One real event to borrow a valid value and schema header from."""
    key = f"{run}-reference"
    emit(settings, key, [7])
    return collect(settings.kafka_bootstrap, "order.events", lambda m: len(m) >= 1,
                   accept=lambda m: m.key() == key.encode())[0]
