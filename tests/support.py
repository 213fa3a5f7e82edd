"""Small helpers the real-stack tests share: read a topic, write outbox rows."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from choreo.chaos.report import ChaosReport
from choreo.chaos.run import run_chaos
from choreo.outbox.codec import EventCodec
from choreo.outbox.kafka import Kafka, build_unmanaged_consumer
from choreo.outbox.writer import OutboxWriter
from choreo.schemas.catalog import SchemaCatalog
from choreo.stack import launcher
from choreo.stack.components import ensure_database
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import REPO_ROOT, StackSettings
from tests.conftest import PORT_OFFSET, TEST_ENV, ports_shifted_by


def collect(
    bootstrap: Kafka,
    topic: str,
    until: Callable[[list[Message]], bool],
    *,
    accept: Callable[[Message], bool] = lambda m: True,
    timeout_s: float = 30.0,
    settle_s: float = 0.0,
) -> list[Message]:
    """Read ``topic`` from the beginning with a fresh group until ``until(accepted)``.

    ``settle_s`` keeps reading that long after the condition holds, so a test can
    assert that nothing *more* arrives (exactly-one checks).
    """
    consumer = build_unmanaged_consumer(bootstrap, f"test-{uuid.uuid4().hex}")
    # Assigned, not subscribed: a group join costs seconds on the embedded broker, and
    # after a broker restart its coordinator can keep a group rebalancing for good.
    deadline = time.monotonic() + timeout_s
    while not (partitions := consumer.list_topics(topic, timeout=10).topics[topic].partitions):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)  # not created yet
    consumer.assign([TopicPartition(topic, number, OFFSET_BEGINNING) for number in partitions])
    accepted: list[Message] = []
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.1):
                if message.error() is None and accept(message):
                    accepted.append(message)
            if settled_at is None and until(accepted):
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= settle_s:
                return accepted
    finally:
        consumer.close()
    return accepted


def header(message: Message, name: str) -> str | None:
    for key, value in message.headers() or []:
        if key == name:
            return value.decode()
    return None


def keyed(key: str) -> Callable[[Message], bool]:
    encoded = key.encode()
    return lambda message: message.key() == encoded


def bump(conn: psycopg.Connection[Any], table: str = "state_probe") -> None:
    """A stand-in state change that tests commit together with an outbox row."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id serial PRIMARY KEY, note text)")
    conn.execute(f"INSERT INTO {table} (note) VALUES ('changed')")


def scratch_database(settings: StackSettings, name: str) -> str:
    """Create a database of a test suite's own on the test server (once); returns its DSN.

    Suites that drive handlers directly keep their state apart from the services' own
    databases, which the end-to-end tests use at the same time.
    """
    return ensure_database(settings, name)


def started_orders_api(settings: StackSettings, name: str, port: int,
                       env: dict[str, str]) -> Iterator[str]:
    """An orders API process of a test's own (``env`` on top of the stack's Kafka and the
    port), healthy, recorded by pid and stopped by pid afterwards; yields its base URL."""
    yield from started_process(settings, name, ["choreo.services.orders", "api"], port, {
        "CHOREO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "CHOREO_ORDERS_PORT": str(port),
        **env})


def started_process(settings: StackSettings, name: str, module: list[str], port: int,
                    env: dict[str, str]) -> Iterator[str]:
    """``python -m <module>`` as a process of a test's own, serving ``/health`` on ``port``:
    healthy, recorded by pid and stopped by pid afterwards; yields its base URL."""
    registry = ProcessRegistry(settings.pid_dir, settings.log_dir)
    registry.stop(name)  # a leftover of an interrupted run, recognised by its pid file
    registry.start(name, [sys.executable, "-m", *module], cwd=REPO_ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not answers(f"{base}/health"):
            assert registry.running(name) is not None, registry.log_file(name).read_text()
            assert time.monotonic() < deadline, f"{name} not healthy within 30 s"
            time.sleep(0.1)
        yield base
    finally:
        registry.stop(name)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def holds(condition: object, context: object = "") -> None:
    """``assert`` as a call, for the lambdas ``eventually`` retries."""
    assert condition, context


def eventually(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Retry an assertion until the saga's compensations have caught up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


WRITER = OutboxWriter(EventCodec(SchemaCatalog.load()), source="tests", emits=None)
"""An outbox writer for tests that emit events of their own into the orders database."""


def confirmed(order_id: str, total: int = 100) -> dict[str, object]:
    return {"order_id": order_id, "total_cents": total}


def emit_confirmed(settings: StackSettings, run: str, keys: int, per_key: int,
                   on_progress: Callable[[int], None] = lambda n: None) -> None:
    """OrderConfirmed for ``run-0`` .. ``run-<keys-1>`` with totals 0 .. per_key-1, one
    commit each, interleaved across keys so that per-key order is not simply commit order
    per key."""
    with psycopg.connect(settings.database_dsn("orders")) as conn:
        for sequence in range(per_key):
            for key in range(keys):
                order_id = f"{run}-{key}"
                WRITER.emit(conn, "OrderConfirmed", order_id, confirmed(order_id, sequence))
                conn.commit()
            on_progress(sequence)


def assert_complete_and_ordered(messages: list[Message], keys: int, per_key: int) -> int:
    """Returns the number of duplicates (allowed after a crash, never a gap or reorder)."""
    codec = EventCodec(SchemaCatalog.load())
    seen: dict[str, list[int]] = collections.defaultdict(list)
    for message in messages:
        payload = codec.decode("OrderConfirmed", header(message, "ce_dataschema"),
                               message.value())
        seen[message.key().decode()].append(payload["total_cents"])
    assert len(seen) == keys
    duplicates = 0
    for key, sequence in seen.items():
        deduplicated = sorted(set(sequence))
        assert deduplicated == list(range(per_key)), f"{key} lost events"
        # A restart may deliver a stretch again, but each event is first seen in order.
        first_seen = list(dict.fromkeys(sequence))
        assert first_seen == deduplicated, f"{key} out of order: {sequence}"
        duplicates += len(sequence) - len(deduplicated)
    return duplicates


def chaos_checked(settings: StackSettings, targets: Sequence[str], **kwargs: Any) -> ChaosReport:
    """A chaos run that kills each of ``targets`` once, its report printed (``-s`` shows
    it; a failure shows it as captured output), and what every such run must show: each
    target killed by a recorded pid, every invariant held, nothing left down on the stack
    the session shares."""
    lines: list[str] = []
    try:
        result = run_chaos(settings, targets=targets, report=lines.append,
                           faults=len(targets), **kwargs)
    finally:
        print("\n".join(lines))
    assert sorted(record.fault.target for record in result.faults) == sorted(targets)
    assert all(record.pid is not None for record in result.faults)
    failed = [check.name for check in result.checks if not check.passed]
    assert not failed, "\n".join(result.lines())
    down = [row.name for row in launcher.status(settings) if not row.healthy]
    assert not down, f"the chaos run left {down} down on the shared stack"
    return result


def own_stack(name: str, port_shift: int, **env: str) -> Iterator[StackSettings]:
    """A whole stack of a test module's own, in ``.choreo-test-<name>`` (inside the repo:
    PostgreSQL runs as its own user, and pytest's tmp folders are root's alone) on the
    session's ports moved by ``port_shift``: started, yielded, then stopped and deleted,
    also when a test failed."""
    state_dir = REPO_ROOT / f".choreo-test-{name}"
    settings = StackSettings.from_env({**os.environ, **TEST_ENV,
                                       **ports_shifted_by(PORT_OFFSET + port_shift),
                                       "CHOREO_STATE_DIR": str(state_dir), **env})
    try:
        launcher.up(settings, report=lambda line: None)
        yield settings
    finally:
        launcher.down(settings, report=lambda line: None)
        shutil.rmtree(state_dir, ignore_errors=True)


def choreo_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``choreo ARGS`` as a user runs it, against the session's test stack."""
    return subprocess.run([sys.executable, "-m", "choreo.cli", *args],
                          env={**os.environ, **TEST_ENV}, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def read_as_cloudevent(message: Message) -> CloudEvent:
    """A record as the CloudEvents SDK's Kafka binding (binary mode) reads it, checked for
    what the specification asks of choreo's records: the content type of the Avro data,
    and a dataschema that is an absolute URI."""
    event = kafka_binding.from_binary(kafka_binding.KafkaMessage(
        {name: value for name, value in message.headers() or [] if value is not None},
        message.key(), message.value() or b""), JSONFormat())
    schema = urlsplit(event.get_dataschema() or "")
    assert event.get_datacontenttype() == "application/avro", event.get_attributes()
    assert schema.scheme and schema.fragment, event.get_dataschema()
    return event
