"""The positions mirrored to Kafka: throttled, only what is held, never fatal."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from choreo.outbox.group_offsets import GroupOffsets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Committing:
    """Stands in for the consumer's one call here; the real commit is in
    tests/stack/test_kafka_tools.py."""

    def __init__(self, refuse: KafkaError | None = None) -> None:
        self.commits: list[list[tuple[str, int, int]]] = []
        self.refuse = refuse

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        assert asynchronous
        if self.refuse is not None:
            raise KafkaException(self.refuse)
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])


def test_commits_the_latest_offsets_at_most_once_per_interval() -> None:
    clock, consumer = Clock(), Committing()
    offsets = GroupOffsets("payments", interval_s=5.0, clock=clock)
    offsets.record({("order.events", 0): 10})
    offsets.commit_due(consumer)  # type: ignore[arg-type]
    offsets.record({("order.events", 0): 12, ("order.events", 1): 3})
    clock.now += 4.9
    offsets.commit_due(consumer)  # type: ignore[arg-type]
    offsets.record({("order.events", 0): 15})
    clock.now += 0.2
    offsets.commit_due(consumer)  # type: ignore[arg-type]
    offsets.commit_due(consumer)  # type: ignore[arg-type]  # nothing new: no call
    assert consumer.commits == [[("order.events", 0, 10)],
                                [("order.events", 0, 15), ("order.events", 1, 3)]]


def test_a_partition_given_up_is_left_to_its_next_owner() -> None:
    clock, consumer = Clock(), Committing()
    offsets = GroupOffsets("payments", clock=clock)
    offsets.record({("order.events", 0): 10, ("order.events", 1): 7})
    offsets.forget([("order.events", 1)])
    offsets.commit_due(consumer)  # type: ignore[arg-type]
    offsets.record({("order.events", 2): 1})
    offsets.forget()
    clock.now += 60
    offsets.commit_due(consumer)  # type: ignore[arg-type]
    assert consumer.commits == [[("order.events", 0, 10)]]


def test_a_refused_commit_is_logged_once_per_kind_and_never_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    consumer = Committing(refuse=KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))
    offsets = GroupOffsets("payments", clock=clock)
    with caplog.at_level(logging.DEBUG, logger="choreo.outbox.group_offsets"):
        for offset in range(3):
            offsets.record({("order.events", 0): offset})
            offsets.commit_due(consumer)  # type: ignore[arg-type]
            clock.now += 10
        offsets.committed(KafkaError(KafkaError._TRANSPORT), [])
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.WARNING]
    assert "GROUP_AUTHORIZATION_FAILED" in caplog.records[0].getMessage()


def test_what_failed_is_committed_again_unless_a_newer_offset_waits() -> None:
    clock, consumer = Clock(), Committing()
    offsets = GroupOffsets("payments", clock=clock)
    offsets.record({("order.events", 0): 10, ("order.events", 1): 4})
    offsets.commit_due(consumer)  # type: ignore[arg-type]
    offsets.record({("order.events", 1): 9})
    offsets.committed(KafkaError(KafkaError.REQUEST_TIMED_OUT),
                      [TopicPartition("order.events", 0, 10), TopicPartition("order.events", 1, 4)])
    offsets.commit_due(consumer, now=True)  # type: ignore[arg-type]  # a hand-over: at once
    assert consumer.commits[-1] == [("order.events", 0, 10), ("order.events", 1, 9)]
