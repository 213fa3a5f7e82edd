"""Two members of one consumer on real advisory locks: each gets a share of every topic."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from choreo.outbox.leases import PartitionLeases, spread

pytestmark = pytest.mark.stack

PARTITIONS = [(topic, number) for topic in ("order.events", "payment.events")
              for number in range(3)]


def test_spread_takes_partition_zero_of_every_topic_first() -> None:
    assert spread(PARTITIONS)[:2] == [("order.events", 0), ("payment.events", 0)]


def test_two_members_each_own_partitions_of_every_topic(probe_database: str) -> None:
    """The first member owns everything, the second joins: once both rebalanced, neither
    holds a topic alone (a replica owning only a topic its service ignores sat idle)."""
    consumer = f"leases-{uuid.uuid4().hex[:8]}"
    first, second = PartitionLeases(consumer), PartitionLeases(consumer)
    with (psycopg.connect(probe_database, autocommit=True) as one,
          psycopg.connect(probe_database, autocommit=True) as two):
        first.rebalance(one, PARTITIONS)
        assert first.owned == set(PARTITIONS)
        second.rebalance(two, PARTITIONS)  # everything taken: it only joins
        first.rebalance(one, PARTITIONS)  # gives up its surplus
        second.rebalance(two, PARTITIONS)
        assert first.owned | second.owned == set(PARTITIONS)
        assert len(first.owned) == len(second.owned) == 3
        for leases in (first, second):
            assert {topic for topic, _ in leases.owned} == {"order.events", "payment.events"}
