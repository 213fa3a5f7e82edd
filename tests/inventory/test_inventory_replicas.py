"""Two inventory replicas committing runs of orders at once must not deadlock: each run
locks what it will touch up front, in one order (``services.inventory.handlers.lock_run``).

Without it, a run taking ``mug`` for its first order and ``tee`` for its second meets a
run of the other replica taking them the other way round; PostgreSQL kills one after a
second and the runtime handles that run again event by event (seen as 16 deadlocks in a
one-minute benchmark with two inventory replicas).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from choreo.outbox.consumer import ConsumerRuntime
from choreo.outbox.dedupe import MemoryDedupe
from choreo.outbox.retry import Backoff
from choreo.outbox.testing import EventStream, RecordingProducer, RecordingWriter, drive
from choreo.services.inventory.handlers import build_handlers, lock_run
from tests.inventory.support import CODEC, CONSUMER, TTL_S, stock

pytestmark = pytest.mark.postgres

ROUNDS, ORDERS_PER_RUN = 4, 40


@pytest.fixture
def replicas(inventory_dsn: str, conn: psycopg.Connection[Any]) -> Iterator[list[ConsumerRuntime]]:
    stock(conn, {"mug": (1250, 10_000), "tee": (1999, 10_000)})
    built = [ConsumerRuntime(
        group_id=CONSUMER, kafka="unused.invalid:9092", database_url=inventory_dsn,
        codec=CODEC, handlers=build_handlers(RecordingWriter(CODEC, CONSUMER), TTL_S),
        dedupe=MemoryDedupe(), backoff=Backoff(base_s=0.001, cap_s=0.002, max_attempts=3),
        producer=RecordingProducer(), lock_first=lock_run) for _ in range(2)]
    yield built
    for runtime in built:
        runtime.close()


def placed(stream: EventStream, first: str, second: str) -> list:  # type: ignore[type-arg]
    """A run whose orders take ``first`` and ``second`` in turn."""
    orders = [str(uuid.uuid4()) for _ in range(ORDERS_PER_RUN)]
    return [stream.delivery("OrderPlaced", order_id, {
        "order_id": order_id, "customer_id": "c", "payment_token": "tok_ok",
        "deadline_at": "2026-01-01T00:15:00.000Z",
        "items": [{"sku": first if i % 2 == 0 else second, "quantity": 1}]})
        for i, order_id in enumerate(orders)]


def test_crossing_runs_of_two_replicas_never_deadlock(
        replicas: list[ConsumerRuntime], conn: psycopg.Connection[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    stream = EventStream(CODEC)
    rounds = [(placed(stream, "mug", "tee"), placed(stream, "tee", "mug"))
              for _ in range(ROUNDS)]
    outcomes: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def replica(index: int) -> None:
        replicas[index].ensure_session()
        for pair in rounds:
            start.wait(timeout=30)
            outcomes[index] += drive(replicas[index], pair[index])

    caplog.set_level(logging.WARNING, logger="choreo.outbox.pipeline")
    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert outcomes == [["handled"] * ROUNDS * ORDERS_PER_RUN] * 2
    assert not [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    reserved = conn.execute("SELECT count(*) FROM reservations WHERE status = 'reserved'")
    assert reserved.fetchone()[0] == 2 * ROUNDS * ORDERS_PER_RUN
