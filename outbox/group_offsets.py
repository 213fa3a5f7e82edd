"""A consumer's positions, also committed to Kafka under its group id, for Kafka's tools.

The positions that count live in the consumer's own database (``outbox.positions``),
saved beside the inbox so a crash never separates "handled" from "read". Kafka never
hears of them, so ``kafka-consumer-groups``, Burrow, kminion and every lag exporter that
asks the broker saw no group at all. This mirrors them: the offsets saved are committed
to the group named like the consumer, at most every ``interval_s``, asynchronously and
for information only. The database stays the truth: a consumer starts from its stored
positions, never from these, and a commit that fails (a broker down, an ACL without
group access) is logged once per kind of failure and committed again in the next round
(unless a newer offset is waiting), never raised. A partition handed over, and a clean
stop, commit at once; a partition acquired commits the position found in the database,
so a quiet partition shows its true offset too. Replicas share the group id and each
commits only the partitions it holds; nobody ever joins the group, so the broker keeps
the offsets of an "empty" group, which is what the tools expect of consumers that assign
their partitions themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from choreo.outbox.positions import TopicPartitionKey

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 5.0
"""Lag exporters sample every 30-60 s; a commit per save (5 a second) would only cost."""


class GroupOffsets:
    """Built before its consumer, whose ``on_commit`` is :meth:`committed`."""

    def __init__(self, group: str, interval_s: float = COMMIT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._group = group
        self._interval_s = interval_s
        self._clock = clock
        self._pending: dict[TopicPartitionKey, int] = {}
        self._due = 0.0
        self._reported: set[str] = set()

    def record(self, offsets: Mapping[TopicPartitionKey, int]) -> None:
        """The next offsets to read, as just saved in the database (or found there when
        a partition was acquired)."""
        self._pending.update(offsets)

    def forget(self, partitions: Iterable[TopicPartitionKey] | None = None) -> None:
        """Partitions given up (all when None): their next owner commits them now."""
        for partition in list(self._pending) if partitions is None else partitions:
            self._pending.pop(partition, None)

    def commit_due(self, consumer: Consumer, now: bool = False) -> None:
        """Commit what was recorded since the last commit, if the interval has passed (or
        ``now``: a partition handed over, a clean stop)."""
        if not self._pending or (self._clock() < self._due and not now):
            return
        offsets = [TopicPartition(topic, number, offset)
                   for (topic, number), offset in sorted(self._pending.items())]
        self._pending, self._due = {}, self._clock() + self._interval_s
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:
            self.failed(error.args[0], offsets)

    def committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's ``on_commit`` callback, called from ``poll``: what failed is
        committed again with the next round, unless a newer offset is waiting."""
        if error is not None:
            self.failed(error, partitions)
        elif refused := [tp for tp in partitions if tp.error]:
            self.failed(refused[0].error, refused)

    def failed(self, error: KafkaError, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            self._pending.setdefault((tp.topic, tp.partition), tp.offset)
        kind = error.name()
        level = logging.DEBUG if kind in self._reported else logging.WARNING
        self._reported.add(kind)
        log.log(level, "positions not committed to Kafka (for its tools only; the database"
                " keeps them): %s", error, extra={"consumer": self._group})
