"""The circuit breaker and the held assignment, without servers (pure)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from prometheus_client import REGISTRY

from choreo.outbox.assignment import Assignment
from choreo.outbox.breaker import Circuit, CircuitSettings
from choreo.outbox.errors import RetryLater


class Down(Exception):
    pass


class Refused(Exception):
    """An answer about this request only: not the dependency being down."""


def circuit(name: str, fail_max: int = 3, reset_s: float = 0.2) -> Circuit:
    return Circuit(name, CircuitSettings(fail_max, reset_s),
                   counts=lambda error: isinstance(error, Down))


def fail(breaker: Circuit, error: Exception) -> type[BaseException]:
    try:
        with breaker.guarding():
            raise error
    except BaseException as raised:  # noqa: BLE001 - the test looks at what came out
        return type(raised)
    raise AssertionError("unreachable")


def state_metric(name: str, state: str) -> float | None:
    return REGISTRY.get_sample_value("choreo_circuit_state", {"circuit": name, "state": state})


def test_opens_after_fail_max_failures_in_a_row_and_then_says_retry_later() -> None:
    breaker = circuit("t-open")
    assert [fail(breaker, Down()) for _ in range(3)] == [Down, Down, RetryLater]
    assert breaker.state == "open"
    assert state_metric("t-open", "open") == 1 and state_metric("t-open", "closed") == 0
    ran = []
    with pytest.raises(RetryLater) as signal, breaker.guarding():
        ran.append(1)
    assert ran == [], "an open circuit does not call the dependency"
    assert 0 < signal.value.after_s <= 0.2


def test_a_success_or_an_answer_that_does_not_count_starts_the_count_again() -> None:
    breaker = circuit("t-count")
    fail(breaker, Down())
    fail(breaker, Down())
    assert fail(breaker, Refused()) is Refused
    fail(breaker, Down())
    fail(breaker, Down())
    with breaker.guarding():
        pass
    assert [fail(breaker, Down()) for _ in range(3)] == [Down, Down, RetryLater]


def test_half_open_probe_closes_on_success_and_reopens_on_failure() -> None:
    breaker = circuit("t-probe", fail_max=1, reset_s=0.1)
    assert fail(breaker, Down()) is RetryLater
    time.sleep(0.15)
    assert fail(breaker, Down()) is RetryLater  # the probe failed: open again
    assert breaker.state == "open"
    time.sleep(0.15)
    with breaker.guarding():
        pass
    assert breaker.state == "closed"
    transitions = {state: REGISTRY.get_sample_value(
        "choreo_circuit_transitions_total", {"circuit": "t-probe", "state": state})
        for state in ("open", "half-open", "closed")}
    assert transitions == {"open": 2, "half-open": 2, "closed": 1}


def test_calls_through_a_closed_circuit_overlap() -> None:
    breaker = circuit("t-overlap")
    together = threading.Barrier(4, timeout=5)  # broken unless four calls are inside at once

    def call() -> None:
        with breaker.guarding():
            together.wait()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not together.broken


class FakeConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int, int]]]] = []

    def _log(self, name: str, partitions: list[TopicPartition]) -> None:
        self.calls.append((name, [(p.topic, p.partition, p.offset) for p in partitions]))

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._log("pause", partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._log("resume", partitions)

    def seek(self, partition: TopicPartition) -> None:
        self._log("seek", [partition])


def test_a_held_assignment_keeps_its_partitions_and_resumes_from_the_first_unhandled() -> None:
    consumer = FakeConsumer()
    assignment = Assignment("c", consumer, ["t"], admin=None)  # type: ignore[arg-type]
    assignment.leases.owned.update({("t", 0), ("t", 1)})
    assignment.next_offsets[("t", 0)] = 7  # partition 1: nothing handled yet
    assignment.hold()
    assert assignment.owned == {("t", 0), ("t", 1)}
    assignment.release()
    assert [name for name, _ in consumer.calls] == ["pause", "resume", "seek", "seek"]
    assert consumer.calls[2][1] == [("t", 0, 7)]
    assert consumer.calls[3][1] == [("t", 1, OFFSET_BEGINNING)]
