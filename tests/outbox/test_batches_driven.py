"""Batching, dead letters, parking and release, driven without a broker (outbox.testing):
the runtime's own logic against its real PostgreSQL, in a second rather than through
Debezium and Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from outbox import deadletter
from outbox.codec import EventCodec
from outbox.consumer import ConsumerRuntime
from outbox.dedupe import MemoryDedupe
from outbox.retry import Backoff
from outbox.testing import EventStream, RecordingProducer, drive, release
from schemas.catalog import SchemaCatalog
from tests.outbox.probe import effects, recording_handler

pytestmark = pytest.mark.stack  # PostgreSQL only: no broker, no Connect

CODEC = EventCodec(SchemaCatalog.load())


Build = Callable[[str, str, set[int], RecordingProducer], ConsumerRuntime]


@pytest.fixture
def runtime_for(probe_database: str) -> Iterator[Build]:
    """Runtimes on the probe database; each one's session is closed after the test."""
    built: list[ConsumerRuntime] = []

    def build(consumer: str, run: str, failing: set[int],
              producer: RecordingProducer) -> ConsumerRuntime:
        built.append(ConsumerRuntime(
            group_id=consumer, bootstrap="unused.invalid:9092", database_url=probe_database,
            codec=CODEC, handlers={"OrderConfirmed": recording_handler(consumer, run, failing)},
            dedupe=MemoryDedupe(), backoff=Backoff(base_s=0.001, cap_s=0.002, max_attempts=2),
            producer=producer))
        return built[-1]

    yield build
    for runtime in built:
        runtime.close()


def confirmed(stream: EventStream, key: str, total: int):  # noqa: ANN201
    return stream.delivery("OrderConfirmed", key, {"order_id": key, "total_cents": total})


def test_a_poison_event_parks_its_key_only_and_a_replay_releases_it_in_order(
        probe_database: str, runtime_for: Build) -> None:
    run, consumer = f"drv-{uuid.uuid4().hex[:8]}", f"drv-{uuid.uuid4().hex[:8]}"
    broken, healthy = f"{run}-broken", f"{run}-healthy"
    failing, producer, stream = {13}, RecordingProducer(), EventStream(CODEC)
    runtime = runtime_for(consumer, run, failing, producer)
    batch = [confirmed(stream, broken, 1), confirmed(stream, healthy, 1),
             confirmed(stream, broken, 13), confirmed(stream, healthy, 2),
             confirmed(stream, broken, 2)]

    outcomes = drive(runtime, batch)

    assert outcomes == ["handled", "handled", "dead_lettered", "handled", "parked"]
    assert [(topic, key) for topic, key, _, _ in producer.records] == [
        (deadletter.dead_letter_topic(consumer), broken)]
    assert producer.records[0][3]["dlq_reason"].startswith("gave up after 2 attempts")
    assert effects(probe_database, consumer) == [(broken, 1), (healthy, 1), (healthy, 2)]

    # A later batch: the key is still blocked, its new event queues behind the others.
    assert drive(runtime, [confirmed(stream, broken, 3)]) == ["parked"]

    failing.clear()
    with psycopg.connect(probe_database, autocommit=True) as conn:
        head = next(e for e in deadletter.list_entries(conn) if e.consumer == consumer)
        deadletter.request(conn, head.seq, "replay")
    release(runtime, {(batch[0].topic, 0)})

    assert [v for k, v in effects(probe_database, consumer) if k == broken] == [1, 13, 2, 3]
    with psycopg.connect(probe_database, autocommit=True) as conn:
        assert not [e for e in deadletter.list_entries(conn) if e.consumer == consumer]
    assert drive(runtime, [confirmed(stream, broken, 4)]) == ["handled"]


def test_a_batch_delivered_again_changes_nothing(probe_database: str,
                                                runtime_for: Build) -> None:
    run, consumer = f"drv-{uuid.uuid4().hex[:8]}", f"drv-{uuid.uuid4().hex[:8]}"
    stream = EventStream(CODEC)
    batch = [confirmed(stream, f"{run}-{i % 3}", i) for i in range(9)]
    assert drive(runtime_for(consumer, run, set(), RecordingProducer()), batch) == \
        ["handled"] * 9

    # Another process (a fresh dedupe store: Redis flushed) meets the same bytes again.
    assert drive(runtime_for(consumer, run, set(), RecordingProducer()), batch) == \
        ["duplicate"] * 9
    assert sorted(v for _, v in effects(probe_database, consumer)) == list(range(9))
