"""Batching, dead letters, parking, blocked keys and their release, driven without a
broker (outbox.testing): the runtime's own logic against its real PostgreSQL, in a second
rather than through Debezium and Kafka. What only a broker can show (garbage bytes on a
real topic, the dead-letter topic's records) stays in test_dead_letters.py."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from choreo.outbox import deadletter, inbox
from choreo.outbox import wire as c
from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime
from choreo.outbox.dedupe import MemoryDedupe
from choreo.outbox.delivery import Delivery, ReceivedEvent
from choreo.outbox.errors import RetryLater
from choreo.outbox.pipeline import Deferred
from choreo.outbox.retry import Backoff
from choreo.outbox.testing import EventStream, RecordingProducer, drive, release
from choreo.schemas.catalog import SchemaCatalog
from tests.outbox.probe import effects, recording_handler

pytestmark = pytest.mark.postgres  # no broker, no Connect

CODEC = EventCodec(SchemaCatalog.load())


Build = Callable[[str, str, set[int], RecordingProducer], ConsumerRuntime]


@pytest.fixture
def runtime_for(probe_database: str) -> Iterator[Build]:
    """Runtimes on the probe database; each one's session is closed after the test."""
    built: list[ConsumerRuntime] = []

    def build(consumer: str, run: str, failing: set[int],
              producer: RecordingProducer) -> ConsumerRuntime:
        built.append(ConsumerRuntime(
            group_id=consumer, kafka="unused.invalid:9092", database_url=probe_database,
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
    letter = producer.records[0][3]
    assert letter["dlq_reason"].startswith("gave up after 2 attempts")
    assert (letter["dlq_attempts"], letter["dlq_consumer"], letter["ce_type"]) == (
        "2", consumer, "OrderConfirmed")
    assert sorted(effects(probe_database, consumer)) == [(broken, 1), (healthy, 1),
                                                         (healthy, 2)]

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


def recorded(conn: psycopg.Connection, consumer: str, delivery: Delivery, status: str,
             with_id: bool = True) -> None:
    """A dead-letter row as the runtime writes it; ``with_id=False``: one without ce_id."""
    headers = {k: v for k, v in delivery.headers.items() if with_id or k != c.HEADER_ID}
    deadletter.record(conn, consumer, dataclasses.replace(delivery, headers=headers),
                      status=status, reason="test", attempts=1)


def test_new_dead_letter_at_an_old_offset_is_not_taken_for_a_redelivery(
        probe_database: str) -> None:
    """After a topic was recreated, offsets repeat: only the event id makes a duplicate."""
    consumer, key = f"drv-{uuid.uuid4().hex[:8]}", f"dl-{uuid.uuid4().hex[:8]}"
    first, again = EventStream(CODEC), EventStream(CODEC)  # two logs: the same offsets
    with psycopg.connect(probe_database, autocommit=True) as conn:
        recorded(conn, consumer, confirmed(first, key, 1), "dead")
        recorded(conn, consumer, confirmed(again, key, 2), "parked")
        entries = deadletter.active_for_key(conn, consumer, key)
        assert [(e.status, e.delivery.offset) for e in entries] == [("dead", 0), ("parked", 0)]
        deadletter.record(conn, consumer, entries[0].delivery, status="dead", reason="again",
                          attempts=1)
        assert len(deadletter.active_for_key(conn, consumer, key)) == 2


def test_interrupted_release_resumes_and_a_letter_without_id_does_not_crash_the_loop(
        probe_database: str, runtime_for: Build) -> None:
    """The process stopped after replaying a key's dead letter, before what it parked:
    the key must not stay blocked forever. And a replayed letter without a ce_id goes
    back to dead with a reason instead of killing the consumer on every start."""
    run, consumer = f"rel-{uuid.uuid4().hex[:8]}", f"drv-{uuid.uuid4().hex[:8]}"
    resumed, headless, dropped = f"{run}-resumed", f"{run}-headless", f"{run}-dropped"
    stream = EventStream(CODEC)
    discarded = confirmed(stream, dropped, 9)
    with psycopg.connect(probe_database, autocommit=True) as conn:
        recorded(conn, consumer, discarded, "discard")
        recorded(conn, consumer, confirmed(stream, resumed, 1), "replayed")
        recorded(conn, consumer, confirmed(stream, resumed, 2), "parked")
        recorded(conn, consumer, confirmed(stream, resumed, 3), "parked")
        recorded(conn, consumer, confirmed(stream, headless, 7), "replay", with_id=False)
    runtime = runtime_for(consumer, run, set(), RecordingProducer())
    runtime.ensure_session()

    release(runtime, {(discarded.topic, 0)})

    assert [v for k, v in effects(probe_database, consumer) if k == resumed] == [2, 3]
    with psycopg.connect(probe_database, autocommit=True) as conn:
        assert deadletter.blocked_keys(conn, consumer) == {headless}
        [entry] = deadletter.active_for_key(conn, consumer, headless)
        assert entry.status == "dead"
        assert "ce_id" in entry.reason
        # A discarded event read again later (after a broker loss) must stay unhandled.
        assert not inbox.claim(conn, consumer, uuid.UUID(discarded.event_id))
    assert drive(runtime, [discarded]) == ["duplicate"]


def test_a_consumer_says_which_event_types_its_inbox_holds(probe_database: str,
                                                           runtime_for: Build) -> None:
    """What a broker-loss recovery reads to leave out what every handler already has."""
    consumer = f"drv-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(probe_database, autocommit=True) as conn:
        inbox.subscribe(conn, consumer, ["OrderPlaced"])  # another version's, still running
    runtime_for(consumer, "unused", set(), RecordingProducer()).ensure_session()
    with psycopg.connect(probe_database) as conn:
        assert conn.execute("SELECT event_type FROM consumer_subscriptions WHERE consumer = %s"
                            " ORDER BY 1", (consumer,)).fetchall() == [
            ("OrderConfirmed",), ("OrderPlaced",)]  # add-only: never one taken off


class FailsOnce(set[int]):
    """Totals whose handler fails the first time only: a transient fault (a psp 503)."""

    def __contains__(self, value: object) -> bool:
        if set.__contains__(self, value):
            self.discard(value)  # type: ignore[arg-type]
            return True
        return False


def test_a_transient_failure_takes_only_its_key_out_of_the_run(
        probe_database: str, runtime_for: Build, caplog: pytest.LogCaptureFixture) -> None:
    """Under load nearly every run held one flaky charge, and the whole run went event by
    event: payments fell to one transaction per event exactly when it had a backlog."""
    run, consumer = f"drv-{uuid.uuid4().hex[:8]}", f"drv-{uuid.uuid4().hex[:8]}"
    stream = EventStream(CODEC)
    batch = [confirmed(stream, f"{run}-{i % 4}", i) for i in range(12)]
    runtime = runtime_for(consumer, run, FailsOnce({5}), RecordingProducer())
    caplog.set_level(logging.WARNING, logger="choreo.outbox.pipeline")

    assert drive(runtime, batch) == ["handled"] * 12

    handled = effects(probe_database, consumer)
    assert sorted(v for _, v in handled) == list(range(12))
    for key in {k for k, _ in handled}:  # per key, still in offset order
        values = [v for k, v in handled if k == key]
        assert values == sorted(values)
    rolled_back = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    assert len(rolled_back) == 1
    assert f"the 3 events of {run}-1 one by one, the other 9 again as a run" in rolled_back[0]


def test_a_retry_later_after_a_rollback_leaves_nothing_before_it_undone(
        probe_database: str) -> None:
    """The loop takes ``Deferred.at`` as "everything before it is done" and moves the
    positions past it. A key taken out of a rolled-back run must therefore not be handled
    before the events ahead of it, or a ``RetryLater`` on its way skips them (an
    OrderPlaced was lost that way when the psp's breaker opened mid-run)."""
    run, consumer = f"drv-{uuid.uuid4().hex[:8]}", f"drv-{uuid.uuid4().hex[:8]}"
    calls: dict[int, int] = {}
    record = recording_handler(consumer, run)

    def handler(event: ReceivedEvent, conn: psycopg.Connection) -> None:
        value = event.payload["total_cents"]
        calls[value] = calls.get(value, 0) + 1
        if value == 2:  # fails in the run, then the breaker opens on its own try
            raise RuntimeError("psp down") if calls[value] == 1 else RetryLater("circuit open", 5.0)
        record(event, conn)

    runtime = ConsumerRuntime(
        group_id=consumer, kafka="unused.invalid:9092", database_url=probe_database,
        codec=CODEC, handlers={"OrderConfirmed": handler}, dedupe=MemoryDedupe(),
        backoff=Backoff(base_s=0.001, cap_s=0.002, max_attempts=2),
        producer=RecordingProducer())
    stream = EventStream(CODEC)
    batch = [confirmed(stream, f"{run}-{value}", value) for value in (1, 2, 3)]
    try:
        with pytest.raises(Deferred) as deferred:
            drive(runtime, batch)
    finally:
        runtime.close()

    ahead = batch[:batch.index(deferred.value.at)]  # taken as done by the loop
    handled = {value for _, value in effects(probe_database, consumer)}
    assert {int(d.key.rsplit("-", 1)[1]) for d in ahead} <= handled


def test_a_run_with_many_failing_keys_is_tried_as_a_run_once_more_then_one_by_one(
        probe_database: str, runtime_for: Build, caplog: pytest.LogCaptureFixture) -> None:
    """Not once per failing key: a run of 190 with 28 flaky charges was rolled back and
    run again 28 times in the 33/s storm."""
    run, consumer = f"drv-{uuid.uuid4().hex[:8]}", f"drv-{uuid.uuid4().hex[:8]}"
    stream = EventStream(CODEC)
    batch = [confirmed(stream, f"{run}-{i}", i) for i in range(20)]
    runtime = runtime_for(consumer, run, FailsOnce({3, 7, 11, 15}), RecordingProducer())
    caplog.set_level(logging.WARNING, logger="choreo.outbox.pipeline")

    assert drive(runtime, batch) == ["handled"] * 20

    rolled_back = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    assert len(rolled_back) == 2, rolled_back
    assert rolled_back[1].endswith("handling one by one")
    assert sorted(v for _, v in effects(probe_database, consumer)) == list(range(20))
