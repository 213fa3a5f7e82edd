"""A consumer's position in each partition, stored in its own database.

Positions live next to the inbox rather than in the broker's group coordinator, so a
position advances in the same database as the effects it covers (Kafka's own docs call
this storing offsets outside Kafka; it was also forced by the old embedded broker, whose
coordinator could keep a dead member forever, issue 13). A restarted consumer seeks to
what its database says, and a position that belongs to another incarnation of the log
(another broker cluster id: a broker whose data was lost and formatted anew; another
topic id: a topic deleted and created again) means "read from the start": the inbox
turns what is read twice into duplicates, never into a second effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

TopicPartitionKey = tuple[str, int]

UPSERT = """
INSERT INTO consumer_positions (consumer, topic, partition, next_offset, log_id, updated_at)
VALUES (%s, %s, %s, %s, %s, now())
ON CONFLICT (consumer, topic, partition) DO UPDATE
SET next_offset = excluded.next_offset, log_id = excluded.log_id, updated_at = now()
"""


def log_id_of(cluster_id: str, topic_id: str) -> str:
    """The name of one topic's log: the broker cluster's id and the topic's own id
    (KIP-516), which a topic deleted and created again under the same name changes."""
    return f"{cluster_id}/{topic_id}"


@dataclass(frozen=True)
class Position:
    next_offset: int
    log_id: str

    def resume_offset(self, log_id: str) -> int | None:
        """Where to continue in the current log, or None to read it from the start.

        Only the log's name decides: a broker formatted anew has a new cluster id, a topic
        deleted and created again a new topic id. Its end offset is no test: a recreated
        topic that already holds more records than the stored offset would answer a
        fetch there without an error, and the first records would be skipped (before the
        topic id was part of the name, that is what happened). A position stored before
        topic ids were (the cluster id alone) resumes when the cluster is the same.
        """
        same = self.log_id == log_id or ("/" not in self.log_id
                                         and log_id.startswith(f"{self.log_id}/"))
        return self.next_offset if same else None


def load(conn: psycopg.Connection[Any], consumer: str) -> dict[TopicPartitionKey, Position]:
    rows = conn.execute(
        "SELECT topic, partition, next_offset, log_id FROM consumer_positions"
        " WHERE consumer = %s", (consumer,),
    ).fetchall()
    return {(topic, partition): Position(offset, log_id)
            for topic, partition, offset, log_id in rows}


def save(conn: psycopg.Connection[Any], consumer: str,
         offsets: Mapping[TopicPartitionKey, int], log_ids: Mapping[str, str]) -> None:
    """Record the next offsets to read, each with its topic's log id; durable at the next
    WAL flush, not at once.

    ``synchronous_commit = off`` makes this commit free of a disk flush. Losing the
    last positions in a PostgreSQL crash only means reading a few events again, which
    the inbox absorbs; the handlers' own transactions stay fully durable.
    """
    if not offsets:
        return
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        with conn.cursor() as cur:
            cur.executemany(UPSERT, [(consumer, topic, partition, offset, log_ids[topic])
                                     for (topic, partition), offset in sorted(offsets.items())])
