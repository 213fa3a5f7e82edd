"""RetryLater pauses the consumer instead of failing events: nothing dead-lettered, the
event that met the pause is handled after it, once, in order with its key (real stack)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from choreo.outbox import deadletter
from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime
from choreo.outbox.dedupe import MemoryDedupe
from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.errors import RetryLater
from choreo.outbox.retry import Backoff
from choreo.schemas.catalog import SchemaCatalog
from choreo.stack.settings import StackSettings
from tests.outbox.probe import effects, recording_handler
from tests.outbox.test_dead_letters import emit
from tests.support import eventually, holds

pytestmark = pytest.mark.stack

OUTAGE_S = 3.0
PAUSE_S = 0.5


def test_retry_later_pauses_then_handles_every_event_once_without_dead_letters(
    running_stack: StackSettings, probe_database: str
) -> None:
    run, consumer = f"pause-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    down = threading.Event()
    down.set()
    asked_while_down: list[float] = []
    record = recording_handler(consumer, run)

    def handler(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        if event.aggregate_id.startswith(run) and down.is_set():
            asked_while_down.append(time.monotonic())
            raise RetryLater("the probe's dependency is down", after_s=PAUSE_S)
        record(event, conn)

    runtime = ConsumerRuntime(
        group_id=consumer, kafka=running_stack.kafka_bootstrap,
        database_url=probe_database, codec=EventCodec(SchemaCatalog.load()),
        handlers={"OrderConfirmed": handler}, dedupe=MemoryDedupe(),
        backoff=Backoff(base_s=0.01, cap_s=0.05, max_attempts=3),  # RetryLater is no attempt
        request_poll_interval_s=0.2, key_concurrency=4,
    )
    keys = [f"{run}-{k}" for k in range(3)]
    for key in keys:
        emit(running_stack, key, [1, 2, 3])
    consuming = threading.Thread(target=runtime.run, kwargs={"idle_exit_s": 3.0})
    stopper = threading.Timer(90, runtime.stop_event.set)
    stopper.start()
    consuming.start()
    try:
        eventually(lambda: holds(runtime.health().get("paused")), timeout_s=60)
        paused_at = time.monotonic()
        while time.monotonic() - paused_at < OUTAGE_S:
            health = runtime.health()
            assert health["partitions"] > 0, "a paused consumer keeps its partitions"
            assert health["status"] == "ok", "and stays healthy: it polls on"
            time.sleep(0.2)
        down.clear()
        consuming.join(timeout=60)
        assert not consuming.is_alive()
    finally:
        stopper.cancel()
        runtime.stop_event.set()
        consuming.join(timeout=30)

    by_key = {key: [v for k, v in effects(probe_database, consumer) if k == key] for key in keys}
    assert by_key == {key: [1, 2, 3] for key in keys}
    with psycopg.connect(probe_database, autocommit=True) as conn:
        # Poison messages other tests left on the topic are dead-lettered: look at ours.
        assert [e for e in deadletter.list_entries(conn)
                if e.consumer == consumer and e.aggregate_key.startswith(run)] == []
    # One probe per pause, not a retry storm: every 0.5 s over 3 s, plus the lanes'
    # own first calls (at most one per key at a time).
    assert len(asked_while_down) <= len(keys) * (OUTAGE_S / PAUSE_S + 2)
