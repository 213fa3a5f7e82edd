"""Poison and failing events go to the dead-letter topic; only their own key waits."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from choreo.outbox import deadletter
from choreo.outbox.kafka import build_producer
from choreo.stack.settings import StackSettings
from tests.outbox.probe import effects, probe_runtime
from tests.support import WRITER, collect, emit_confirmed, header

pytestmark = pytest.mark.stack


def emit(settings: StackSettings, key: str, values: list[int]) -> None:
    with psycopg.connect(settings.database_dsn("orders")) as conn:
        for value in values:
            WRITER.emit(conn, "OrderConfirmed", key, {"order_id": key, "total_cents": value})
            conn.commit()


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
