"""An idle consumer pauses between fetches and loses nothing by it (outbox.doze).

The doze's steps are checked against a recording assignment; on the real stack, events
written while a probe consumer dozes, in bursts at uneven gaps, must each be handled
once and in order: a release that skipped what was fetched before the pause, or a pause
that never ended, would show as a gap or a timeout.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest

from outbox.codec import EventCodec
from outbox.consumer import ConsumerRuntime
from outbox.dedupe import MemoryDedupe
from outbox.doze import Doze
from outbox.retry import Backoff
from schemas.catalog import SchemaCatalog
from stack.settings import StackSettings
from tests.outbox.probe import effects, recording_handler
from tests.outbox.test_dead_letters import emit
from tests.support import eventually


class RecordingAssignment:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def hold(self) -> None:
        self.calls.append("hold")

    def release(self) -> None:
        self.calls.append("release")


def quiet_polls(doze: Doze, assignment: RecordingAssignment, start: float, until: float,
                step: float = 0.01) -> list[float]:
    """Poll rounds with nothing received; returns the waits the doze asked for."""
    waits, now = [], start
    while now < until:
        waits.append(doze.before_poll(assignment, now, 0.1))  # type: ignore[arg-type]
        doze.after_poll(assignment, False, now)  # type: ignore[arg-type]
        now += step
    return waits


def test_a_quiet_consumer_pauses_then_fetches_one_round_then_pauses_again() -> None:
    doze, assignment = Doze(pause_s=0.05, quiet_s=1.0, awake_s=0.02), RecordingAssignment()
    quiet_polls(doze, assignment, 0.0, 0.99)
    assert assignment.calls == [] and not doze.dozing

    quiet_polls(doze, assignment, 1.0, 1.005)
    assert assignment.calls == ["hold"] and doze.dozing
    assert doze.before_poll(assignment, 1.03, 0.1) == pytest.approx(0.02)  # type: ignore[arg-type]

    doze.after_poll(assignment, False, 1.03)  # type: ignore[arg-type]
    assert doze.before_poll(assignment, 1.05, 0.1) == 0.02  # type: ignore[arg-type]
    assert assignment.calls == ["hold", "release"]  # awake for one round
    doze.after_poll(assignment, False, 1.07)  # type: ignore[arg-type]
    assert assignment.calls == ["hold", "release", "hold"]


def test_a_message_ends_the_doze_and_the_quiet_second_starts_over() -> None:
    doze, assignment = Doze(pause_s=0.05), RecordingAssignment()
    quiet_polls(doze, assignment, 0.0, 1.01)
    doze.before_poll(assignment, 1.2, 0.1)  # type: ignore[arg-type]
    doze.after_poll(assignment, True, 1.2)  # type: ignore[arg-type]
    assert not doze.dozing
    assert doze.before_poll(assignment, 1.21, 0.1) == 0.1  # type: ignore[arg-type]
    calls = len(assignment.calls)
    quiet_polls(doze, assignment, 1.21, 2.19)
    assert len(assignment.calls) == calls  # not before another quiet second


def test_no_pause_never_dozes() -> None:
    doze, assignment = Doze(pause_s=0.0), RecordingAssignment()
    assert set(quiet_polls(doze, assignment, 0.0, 5.0)) == {0.1}
    assert assignment.calls == []


def test_a_hold_of_the_runtime_wakes_the_doze_without_releasing() -> None:
    """The runtime's own hold releases the partitions itself when it ends."""
    doze, assignment = Doze(pause_s=0.05), RecordingAssignment()
    quiet_polls(doze, assignment, 0.0, 1.01)
    doze.interrupted(1.02)
    assert not doze.dozing
    assert doze.before_poll(assignment, 1.2, 0.1) == 0.1  # type: ignore[arg-type]
    assert assignment.calls == ["hold"]


@pytest.mark.stack
def test_events_written_while_a_consumer_dozes_are_each_handled_once_in_order(
    running_stack: StackSettings, probe_database: str
) -> None:
    run, consumer = f"doze-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"
    runtime = ConsumerRuntime(
        group_id=consumer, bootstrap=running_stack.kafka_bootstrap,
        database_url=probe_database, codec=EventCodec(SchemaCatalog.load()),
        handlers={"OrderConfirmed": recording_handler(consumer, run)}, dedupe=MemoryDedupe(),
        backoff=Backoff(base_s=0.01, cap_s=0.05, max_attempts=3),
        idle_fetch_pause_s=0.2,
    )
    consuming = threading.Thread(target=runtime.run)
    consuming.start()
    try:
        eventually(lambda: _assert(runtime.health().get("dozing")), timeout_s=90)
        keys, sent = [f"{run}-{k}" for k in range(3)], {}
        rng = random.Random(7)
        for burst in range(8):
            key = keys[burst % len(keys)]
            values = [burst * 10 + n for n in range(rng.randint(1, 4))]
            emit(running_stack, key, values)
            sent.setdefault(key, []).extend(values)
            time.sleep(rng.choice([0.05, 0.15, 0.3, 1.2]))  # some gaps long enough to doze
        eventually(lambda: _assert(_handled(probe_database, consumer, keys) == sent),
                   timeout_s=30)
        time.sleep(2.0)  # nothing more comes: no second delivery
        assert _handled(probe_database, consumer, keys) == sent
        eventually(lambda: _assert(runtime.health().get("dozing")), timeout_s=10)
    finally:
        runtime.stop_event.set()
        consuming.join(timeout=30)
    assert not consuming.is_alive()


def _handled(database: str, consumer: str, keys: list[str]) -> dict[str, list[int]]:
    recorded = effects(database, consumer)
    return {key: [v for k, v in recorded if k == key] for key in keys
            if any(k == key for k, _ in recorded)}


def _assert(condition: object) -> None:
    assert condition
