"""The partitions a consumer process reads, and from where: leases plus positions.

This is what replaces the broker's consumer group: ``PartitionLeases`` decides which
partitions this process owns, ``positions`` says where each one continues, and this
module turns both into confluent-kafka ``assign`` calls. It runs only between batches,
on the runtime's thread, so an assignment never changes under a batch being handled.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from choreo.outbox import positions
from choreo.outbox.group_offsets import GroupOffsets
from choreo.outbox.leases import PartitionLeases
from choreo.outbox.positions import TopicPartitionKey

log = logging.getLogger(__name__)


class Assignment:
    def __init__(self, consumer_name: str, consumer: Consumer, topics: list[str],
                 admin: AdminClient, group_offsets: GroupOffsets | None = None) -> None:
        self.consumer_name = consumer_name
        self.consumer = consumer
        self.group_offsets = group_offsets or GroupOffsets(consumer_name)
        """The positions mirrored to Kafka for its tools (``outbox.group_offsets``)."""
        self.admin = admin
        self.topics = topics
        self.leases = PartitionLeases(consumer_name)
        self.next_offsets: dict[TopicPartitionKey, int] = {}
        """Next offset to read per owned partition, as handled so far."""
        self._unsaved: dict[TopicPartitionKey, int] = {}
        self.log_id = ""
        """The broker cluster's id."""
        self.topic_ids: dict[str, str] = {}
        """Each topic's id as it was when its partitions were acquired (``log_ids``)."""
        self.partitions_in_topics = 0
        """How many partitions our topics had at the last look: with ``owned``, tells a
        replica that owns all of them from one that waits for a stopped one's share."""

    @property
    def owned(self) -> set[TopicPartitionKey]:
        return self.leases.owned

    def check_log(self) -> tuple[bool, list[TopicPartitionKey]]:
        """Is it still the log we were reading? Also returns the partitions of our topics.

        The broker's cluster id names the log: a broker whose data was lost is formatted
        with a new one. If it changed, every owned partition is read again from the
        start and this returns False.
        """
        metadata = self.consumer.list_topics(timeout=10)
        log_id = metadata.cluster_id or ""
        partitions = sorted((topic, number) for topic in self.topics
                            if topic in metadata.topics
                            for number in metadata.topics[topic].partitions)
        self.partitions_in_topics = len(partitions)
        same = not self.owned or log_id == self.log_id
        if not same:
            self.restart_log(log_id)
        self.log_id = log_id
        return same, partitions

    def session_lost(self) -> None:
        """The database session died and its locks with it: stop reading everything.

        The whole assignment, not just ``owned``: an error half-way through a rebalance
        can leave the two apart (a lock taken but not yet assigned, or released but
        still assigned), and a partition still fetched without its lock could be
        handled by two members at once.
        """
        try:
            self.consumer.unassign()
        except KafkaException as error:
            log.warning("unassign failed: %s", error, extra={"consumer": self.consumer_name})
        self.leases.forget()
        self.next_offsets.clear()
        self._unsaved.clear()
        self.group_offsets.forget()

    def rebalance(self, conn: psycopg.Connection[Any]) -> bool:
        """Take or give up partitions toward a fair share. Returns whether anything changed."""
        _, partitions = self.check_log()
        acquired, released = self.leases.rebalance(conn, partitions)
        if released:
            self.consumer.incremental_unassign([TopicPartition(t, p) for t, p in released])
            for partition in released:
                self.next_offsets.pop(partition, None)
                self._unsaved.pop(partition, None)
            self.group_offsets.commit_due(self.consumer, now=True)  # before the next owner
            self.group_offsets.forget(released)
        if acquired:
            self._start(conn, acquired)
        if acquired or released:
            log.info("owning %d partitions (+%d, -%d)", len(self.owned), len(acquired),
                     len(released), extra={"consumer": self.consumer_name})
        return bool(acquired or released)

    def log_ids(self) -> dict[str, str]:
        return {topic: positions.log_id_of(self.log_id, topic_id)
                for topic, topic_id in self.topic_ids.items()}

    def _learn_topic_ids(self, topics: set[str]) -> None:
        """Asked when partitions are acquired (rare), not each round: a topic recreated
        under a running consumer keeps its old id here, so its positions are stored under
        the old name and read from the start at the next acquisition (duplicates, which
        the inbox absorbs; never a skip)."""
        described = self.admin.describe_topics(TopicCollection(sorted(topics)),
                                                request_timeout=10)
        for topic, future in described.items():
            self.topic_ids[topic] = str(future.result().topic_id)

    def _start(self, conn: psycopg.Connection[Any], acquired: list[TopicPartitionKey]) -> None:
        self._learn_topic_ids({topic for topic, _ in acquired})
        log_ids = self.log_ids()
        stored = positions.load(conn, self.consumer_name)
        starts = []
        for topic, number in acquired:
            position = stored.get((topic, number))
            offset = position.resume_offset(log_ids[topic]) if position else None
            if position is not None and offset is None:
                log.warning("%s/%d: stored offset %d belongs to log %s, not %s; reading it"
                            " from the start", topic, number, position.next_offset,
                            position.log_id, log_ids[topic],
                            extra={"consumer": self.consumer_name})
            starts.append(TopicPartition(topic, number,
                                         OFFSET_BEGINNING if offset is None else offset))
            if offset is not None:
                self.next_offsets[(topic, number)] = offset
                self.group_offsets.record({(topic, number): offset})
        self.consumer.incremental_assign(starts)

    def restart_log(self, log_id: str) -> None:
        """The broker came back with an empty log: read every owned partition again."""
        log.warning("broker log changed (%s -> %s); reading %d partitions from the start",
                    self.log_id, log_id, len(self.owned), extra={"consumer": self.consumer_name})
        owned = [TopicPartition(t, p) for t, p in sorted(self.owned)]
        # Asked first: if the broker does not answer, the log's id stays the old one and
        # the next check restarts the log again, rather than taking it as already done.
        self._learn_topic_ids({tp.topic for tp in owned})
        self.log_id = log_id
        self.consumer.incremental_unassign(owned)
        self.consumer.incremental_assign([TopicPartition(tp.topic, tp.partition,
                                                         OFFSET_BEGINNING) for tp in owned])
        self.next_offsets.clear()
        self._unsaved = {(tp.topic, tp.partition): 0 for tp in owned}

    def advance(self, messages: list[Message]) -> None:
        for message in messages:
            key = (message.topic(), message.partition())
            self.next_offsets[key] = self._unsaved[key] = message.offset() + 1

    def hold(self) -> None:
        """Stop fetching every owned partition, keeping its lease; ``release`` undoes it.

        Called again after a rebalance, so a partition acquired meanwhile is held too.
        Pausing an already paused partition changes nothing.
        """
        if self.owned:
            self.consumer.pause([TopicPartition(t, p) for t, p in sorted(self.owned)])

    def release(self) -> None:
        """Fetch again, each partition from the first event not handled yet.

        The seek matters: a resumed partition would go on after the last message polled,
        and the batch that met the pause was polled but not handled. So were any
        messages polled while held (the runtime drops them). It also makes fetching
        start at once: after a plain resume, librdkafka fetched again only about 700 ms
        later (measured against the embedded broker).
        """
        if not self.owned:
            return
        starts = [TopicPartition(t, p, self.next_offsets.get((t, p), OFFSET_BEGINNING))
                  for t, p in sorted(self.owned)]
        self.consumer.resume(starts)
        for start in starts:
            self.consumer.seek(start)

    def save(self, conn: psycopg.Connection[Any]) -> None:
        positions.save(conn, self.consumer_name, self._unsaved, self.log_ids())
        self.group_offsets.record(self._unsaved)
        self._unsaved = {}
        self.group_offsets.commit_due(self.consumer)

    def lag(self) -> dict[TopicPartitionKey, int]:
        """Records behind the log end per owned partition, from cached watermarks."""
        behind = {}
        for topic, number in self.owned:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, number),
                                                            cached=True)
            if high < 0:
                continue
            behind[(topic, number)] = max(high - self.next_offsets.get((topic, number), low), 0)
        return behind
