"""The consumer runtime recovers on its own: lost database sessions, a broker that came
back with an empty log, a replica killed mid-stream. (A release interrupted half-way and
dead letters at reused offsets are driven without a broker: test_batches_driven.py.)"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from choreo.outbox.codec import EventCodec
from choreo.outbox.kafka import build_admin, build_producer, ensure_topics
from choreo.schemas.catalog import SchemaCatalog
from choreo.stack import launcher
from choreo.stack.broker import broker_component, data_dir
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import REPO_ROOT, StackSettings
from tests.outbox.probe import assert_each_once, effects, probe_runtime
from tests.support import emit_confirmed

pytestmark = pytest.mark.stack

CODEC = EventCodec(SchemaCatalog.load())


def confirmed_message(key: str, value: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """An OrderConfirmed as Debezium would publish it: Avro value, CloudEvents headers."""
    data, schema = CODEC.encode("OrderConfirmed", {"order_id": key, "total_cents": value})
    headers = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"OrderConfirmed"),
               ("ce_dataschema", schema.reference.encode()), ("ce_source", b"tests")]
    return data, headers


def produce(bootstrap: str, key: str, values: range) -> None:
    producer = build_producer(bootstrap)
    for value in values:
        data, headers = confirmed_message(key, value)
        producer.produce("order.events", key=key, value=data, headers=headers, partition=0)
    assert producer.flush(10) == 0


def in_thread(runtime) -> threading.Thread:  # noqa: ANN001
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    return thread


def wait_for(check, timeout_s: float = 60.0, what: str = "condition") -> float:  # noqa: ANN001
    """Seconds until ``check()`` held; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - started


def partition_owners(database_url: str, consumer: str, partitions: int = 3) -> dict[int, int]:
    """Partition number -> backend pid of the session holding its lease."""
    keys = {f"choreo:partition:{consumer}:order.events:{n}": n for n in range(partitions)}
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT k.name, l.pid FROM unnest(%s::text[]) AS k(name) JOIN pg_locks l"
            " ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(k.name, 0)"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (list(keys),),
        ).fetchall()
    return {keys[name]: pid for name, pid in rows}


@dataclasses.dataclass(frozen=True)
class ScratchBroker:
    bootstrap: str
    restart: Callable[[], None]


@pytest.fixture
def scratch_broker(running_stack: StackSettings, tmp_path: Path) -> Iterator[ScratchBroker]:
    """A broker of this test's own, so replacing its log does not empty the suite's topics."""
    settings = dataclasses.replace(running_stack, kafka_port=running_stack.kafka_port + 7,
                                   kafka_controller_port=running_stack.kafka_port + 8, brokers=1,
                                   state_dir=tmp_path, artifact_cache=running_stack.artifact_dir)
    registry = ProcessRegistry(tmp_path / "pids", tmp_path / "logs")
    component = broker_component(settings)

    def start() -> None:
        launcher.launch(component, registry)
        launcher.wait_healthy(component, registry, 30)
        ensure_topics(settings.kafka_bootstrap, ["order.events"])

    def restart() -> None:
        """SIGKILLed and started on a deleted data folder: a new log, a new cluster id."""
        registry.kill("broker")
        shutil.rmtree(data_dir(settings))
        start()  # launch waits for the killed broker to let go of its port

    start()
    try:
        yield ScratchBroker(settings.kafka_bootstrap, restart)
    finally:
        registry.stop("broker")


def test_broker_restarted_with_an_empty_log_is_read_again_from_the_start(
    scratch_broker: ScratchBroker, probe_database: str
) -> None:
    """A broker whose data folder was lost comes back with a new cluster id and an empty
    log: positions stored for the old log must not skip the new one's first records."""
    run, consumer = f"log-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    bootstrap = scratch_broker.bootstrap
    produce(bootstrap, f"{run}-a", range(10))
    runtime = probe_runtime(bootstrap, probe_database, consumer, run)
    thread = in_thread(runtime)
    try:
        wait_for(lambda: len(effects(probe_database, consumer)) == 10, what="first log")
        scratch_broker.restart()
        produce(bootstrap, f"{run}-b", range(3))  # fewer than the stored offset of 10
        wait_for(lambda: len(effects(probe_database, consumer)) == 13, what="the new log")
        produce(bootstrap, f"{run}-b", range(3, 20))
        wait_for(lambda: len(effects(probe_database, consumer)) == 30, what="the rest")
    finally:
        runtime.stop_event.set()
        thread.join(20)
    values = [v for k, v in effects(probe_database, consumer) if k == f"{run}-b"]
    assert values == list(range(20))


def test_a_topic_created_again_is_read_from_its_start_by_a_restarted_consumer(
    scratch_broker: ScratchBroker, probe_database: str
) -> None:
    """Finding 7 of issue 21: the cluster id stays when a topic is deleted and created
    again; the stored position (10) was applied to the new topic, which already held more
    records than that, and its first ten were never handled."""
    run, consumer = f"topic-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    bootstrap = scratch_broker.bootstrap
    produce(bootstrap, f"{run}-a", range(10))
    first = probe_runtime(bootstrap, probe_database, consumer, run)
    first.run(idle_exit_s=2.0)
    first.close()
    assert len(effects(probe_database, consumer)) == 10

    admin = build_admin(bootstrap)
    admin.delete_topics(["order.events"])["order.events"].result(timeout=30)
    wait_for(lambda: "order.events" not in admin.list_topics(timeout=10).topics,
             what="the topic to go")
    ensure_topics(bootstrap, ["order.events"])
    produce(bootstrap, f"{run}-b", range(15))

    second = probe_runtime(bootstrap, probe_database, consumer, run)
    second.run(idle_exit_s=3.0)
    second.close()
    assert [v for k, v in effects(probe_database, consumer) if k == f"{run}-b"] == list(
        range(15))


def test_lost_database_session_is_survived_and_nothing_is_lost(
    running_stack: StackSettings, probe_database: str
) -> None:
    """What a PostgreSQL restart does to a consumer: its session is terminated mid-stream.
    The runtime drops its leases, reconnects with backoff, and reads on from its position."""
    run, consumer = f"sess-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    keys, per_key = 4, 30
    runtime = probe_runtime(running_stack.kafka_bootstrap, probe_database, consumer, run)
    runtime.batch_size = 5
    thread = in_thread(runtime)
    terminations = 0

    def terminate_sessions(sequence: int) -> None:
        """Every tenth round of commits, while the stream is mid-flight (not after it: the
        consumer can be faster than a loop that waits for it to fall behind)."""
        nonlocal terminations
        if sequence % 10 == 9 and sequence < per_key - 1:
            with psycopg.connect(probe_database, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN"
                    " (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
                    " AND datname = current_database() AND pid <> pg_backend_pid()")
            terminations += 1

    try:
        wait_for(lambda: runtime.health()["status"] == "ok", what="the consumer to start")
        emit_confirmed(running_stack, run, keys, per_key, on_progress=terminate_sessions)
        wait_for(lambda: len(effects(probe_database, consumer)) >= keys * per_key,
                 what="every event after the terminations")
        assert thread.is_alive(), "the consumer loop died with its session"
    finally:
        runtime.stop_event.set()
        thread.join(20)
    assert terminations >= 2
    assert_each_once(effects(probe_database, consumer), keys, per_key)


def start_probe(registry: ProcessRegistry, name: str, settings: StackSettings, database: str,
                consumer: str, run: str) -> None:
    registry.start(name, [sys.executable, "-m", "tests.outbox.probe", settings.kafka_bootstrap,
                          database, consumer, run, settings.redis_url],
                   cwd=REPO_ROOT, env={"PROBE_BATCH": "20"})


def test_replicas_share_partitions_and_a_survivor_takes_over_at_once(
    running_stack: StackSettings, probe_database: str
) -> None:
    run, consumer = f"repl-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    keys, per_key = 12, 25
    registry = ProcessRegistry(running_stack.pid_dir, running_stack.log_dir)
    names = [f"probe-{consumer}-{i}" for i in range(2)]
    try:
        for name in names:
            start_probe(registry, name, running_stack, probe_database, consumer, run)
        wait_for(lambda: len(set(partition_owners(probe_database, consumer).values())) == 2
                 and len(partition_owners(probe_database, consumer)) == 3,
                 what="two replicas sharing three partitions")
        emit_confirmed(running_stack, run, keys, per_key)
        wait_for(lambda: len(effects(probe_database, consumer)) >= keys * per_key // 3,
                 what="progress before the kill")
        victim = names[0]
        owners = set(partition_owners(probe_database, consumer).values())
        registry.kill(victim)
        takeover = wait_for(
            lambda: set(partition_owners(probe_database, consumer).values()) - owners == set()
            and len(set(partition_owners(probe_database, consumer).values())) == 1
            and len(partition_owners(probe_database, consumer)) == 3,
            what="the survivor to own every partition")
        print(f"\nreplica takeover after SIGKILL: {takeover:.2f}s")
        wait_for(lambda: len(effects(probe_database, consumer)) >= keys * per_key,
                 what="every event")
        restart_started = time.monotonic()
        start_probe(registry, victim, running_stack, probe_database, consumer, run)
        wait_for(lambda: len(set(partition_owners(probe_database, consumer).values())) == 2,
                 what="the restarted replica to get its share back")
        print("restarted replica owns partitions again after"
              f" {time.monotonic() - restart_started:.2f}s (process start included)")
    finally:
        for name in names:
            registry.stop(name)
    assert_each_once(effects(probe_database, consumer), keys, per_key)
