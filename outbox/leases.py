"""Which process owns which partition: PostgreSQL advisory locks, one per partition.

The replicas of a consumer service share its database, so they can share partitions
without the broker's group coordinator. A partition is owned by whoever holds its
session-level advisory lock, and the lock lives on the same connection that commits
the handlers' transactions: if that connection dies (process killed, database
restarted), the locks are gone at the same moment, the survivor takes them at its next
tick, and no transaction of the old owner can commit after that. Each process also
holds one "member" lock so everyone can count the live members and take a fair share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import psycopg

from choreo.outbox.positions import TopicPartitionKey

MAX_MEMBERS = 64

COUNT_MEMBERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((classid::bigint << 32) | objid::bigint)
      IN (SELECT hashtextextended(%s || slot, 0) FROM generate_series(0, %s) AS slot)
"""


def spread(partitions: Iterable[TopicPartitionKey]) -> list[TopicPartitionKey]:
    """Partitions in the order members take and keep them: partition 0 of every topic,
    then partition 1 of every topic, ...

    A member keeps the first of its partitions in this order and gives up the rest, and
    a member joining takes free ones in it. Sorted by topic instead, a consumer of two
    topics with two members kept all of the first topic and handed the second all of the
    other: a replica of inventory then owned only ``payment.events``, on which inventory
    handles next to nothing, and sat idle (seen in ``tests/e2e/test_replicas.py``).
    """
    return sorted(partitions, key=lambda partition: (partition[1], partition[0]))


def fair_share(partitions: int, members: int) -> int:
    """How many partitions one member should own; every partition has an owner."""
    return math.ceil(partitions / max(members, 1))


class PartitionLeases:
    """The leases of one consumer process, held on one database session."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.member_slot: int | None = None
        self.owned: set[TopicPartitionKey] = set()

    @property
    def _member_prefix(self) -> str:
        return f"choreo:member:{self.consumer}:"

    def _partition_key(self, partition: TopicPartitionKey) -> str:
        topic, number = partition
        return f"choreo:partition:{self.consumer}:{topic}:{number}"

    def forget(self) -> None:
        """The session is gone, and with it every lock it held."""
        self.member_slot = None
        self.owned = set()

    def join(self, conn: psycopg.Connection[Any]) -> int:
        """Take the first free member slot on this session."""
        for slot in range(MAX_MEMBERS):
            if _try_lock(conn, f"{self._member_prefix}{slot}"):
                self.member_slot = slot
                return slot
        raise RuntimeError(f"more than {MAX_MEMBERS} members of {self.consumer}")

    def members(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(COUNT_MEMBERS, (self._member_prefix, MAX_MEMBERS - 1)).fetchone()
        return int(row[0]) if row else 1

    def try_acquire(self, conn: psycopg.Connection[Any], partition: TopicPartitionKey) -> bool:
        if partition in self.owned:
            return True
        if _try_lock(conn, self._partition_key(partition)):
            self.owned.add(partition)
            return True
        return False

    def release(self, conn: psycopg.Connection[Any], partition: TopicPartitionKey) -> None:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))",
                     (self._partition_key(partition),))
        self.owned.discard(partition)

    def rebalance(self, conn: psycopg.Connection[Any], partitions: Iterable[TopicPartitionKey]
                  ) -> tuple[list[TopicPartitionKey], list[TopicPartitionKey]]:
        """Grow or shrink this member's share. Returns (acquired, released).

        Each member starts its search at a different place in the partition list, so
        members joining at once do not all reach for the same partitions first.
        """
        if self.member_slot is None:
            self.join(conn)
        wanted = spread(partitions)
        target = fair_share(len(wanted), self.members(conn))
        released = spread(self.owned)[target:] if len(self.owned) > target else []
        for partition in released:
            self.release(conn, partition)
        acquired: list[TopicPartitionKey] = []
        start = (self.member_slot or 0) % len(wanted) if wanted else 0
        for partition in wanted[start:] + wanted[:start]:
            if len(self.owned) >= target:
                break
            if partition not in self.owned and self.try_acquire(conn, partition):
                acquired.append(partition)
        return acquired, released


def _try_lock(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)).fetchone()
    return bool(row and row[0])
