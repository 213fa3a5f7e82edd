"""Redelivery changes nothing twice: topic replay, consumer SIGKILL, Redis down or flushed."""

from __future__ import annotations

import sys
import time
import uuid

import pytest
import redis

from choreo.outbox.dedupe import MemoryDedupe, RedisDedupe
from choreo.outbox.kafka import build_producer
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import REPO_ROOT, StackSettings
from tests.outbox.probe import assert_each_once, effects, probe_runtime
from tests.support import collect, emit_confirmed

pytestmark = pytest.mark.stack


def redeliver_run(settings: StackSettings, run: str, expected: int, times: int) -> None:
    """Produce this run's messages again, byte for byte: a replay of the topic."""
    messages = collect(settings.kafka_bootstrap, "order.events", lambda m: len(m) >= expected,
                       accept=lambda m: m.key().startswith(run.encode()), timeout_s=60)
    assert len(messages) == expected
    producer = build_producer(settings.kafka_bootstrap)
    for _ in range(times):
        for message in messages:
            producer.produce("order.events", key=message.key(), value=message.value(),
                             headers=message.headers())
    producer.flush(10)


def drain_until(runtime, database_url: str, consumer: str, count: int) -> None:  # noqa: ANN001
    runtime.run(idle_exit_s=3.0)
    assert len(effects(database_url, consumer)) >= count


@pytest.mark.parametrize("dedupe_kind", ["redis", "redis-down", "redis-flushed", "inbox-only"])
def test_event_delivered_three_times_has_one_effect(
    running_stack: StackSettings, probe_database: str, dedupe_kind: str
) -> None:
    run, consumer = f"r3-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    keys, per_key = 5, 10
    emit_confirmed(running_stack, run, keys, per_key)
    redeliver_run(running_stack, run, keys * per_key, times=2)
    dedupe = {
        "redis": lambda: RedisDedupe(running_stack.redis_url),
        "redis-flushed": lambda: RedisDedupe(running_stack.redis_url),
        "redis-down": lambda: RedisDedupe("redis://127.0.0.1:1/0"),
        "inbox-only": MemoryDedupe,
    }[dedupe_kind]()
    runtime = probe_runtime(running_stack.kafka_bootstrap, probe_database, consumer, run, dedupe)
    runtime.batch_size = 7  # several offset commits, so a flush lands between them
    if dedupe_kind == "redis-flushed":
        original = runtime.process_batch

        def process_then_flush(deliveries):  # noqa: ANN001, ANN202
            outcomes = original(deliveries)
            redis.Redis.from_url(running_stack.redis_url).flushdb()
            return outcomes

        runtime.process_batch = process_then_flush  # type: ignore[method-assign]
    drain_until(runtime, probe_database, consumer, keys * per_key)
    assert_each_once(effects(probe_database, consumer), keys, per_key)


def test_lanes_keep_each_key_in_order_and_each_event_once(
    running_stack: StackSettings, probe_database: str
) -> None:
    """Handlers of different keys side by side (outbox.lanes) in one transaction per run:
    replayed twice, every event still has one effect, each key's in offset order."""
    run, consumer = f"lanes-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    keys, per_key = 8, 15
    emit_confirmed(running_stack, run, keys, per_key)
    redeliver_run(running_stack, run, keys * per_key, times=2)
    runtime = probe_runtime(running_stack.kafka_bootstrap, probe_database, consumer, run)
    runtime.key_concurrency = 4
    drain_until(runtime, probe_database, consumer, keys * per_key)
    assert_each_once(effects(probe_database, consumer), keys, per_key)


def test_consumer_killed_between_commit_and_offset_commit(
    running_stack: StackSettings, probe_database: str
) -> None:
    """SIGKILL a consumer process repeatedly mid-stream; restart; every effect exactly once."""
    run, consumer = f"kill-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    keys, per_key = 10, 40
    emit_confirmed(running_stack, run, keys, per_key)
    registry = ProcessRegistry(running_stack.pid_dir, running_stack.log_dir)
    name = f"probe-{consumer}"
    command = [sys.executable, "-m", "tests.outbox.probe", running_stack.kafka_bootstrap,
               probe_database, consumer, run, running_stack.redis_url]
    kills = 0
    try:
        deadline = time.monotonic() + 180
        while len(effects(probe_database, consumer)) < keys * per_key:
            assert time.monotonic() < deadline, "consumer made no progress"
            registry.start(name, command, cwd=REPO_ROOT, env={"PROBE_BATCH": "20"})
            before = len(effects(probe_database, consumer))
            while (len(effects(probe_database, consumer)) < min(before + 60, keys * per_key)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            registry.kill(name)
            kills += 1
    finally:
        registry.stop(name)
    # One last clean run picks up whatever was committed to the DB but not to Kafka.
    drain_until(probe_runtime(running_stack.kafka_bootstrap, probe_database, consumer, run),
                probe_database, consumer, keys * per_key)
    assert kills >= 2
    assert_each_once(effects(probe_database, consumer), keys, per_key)
