"""A consumer's position in each partition, stored in its own database.

Positions live next to the inbox rather than in the broker's group coordinator, so a
position advances in the same database as the effects it covers (Kafka's own docs call
this storing offsets outside Kafka; it was also forced by the old embedded broker, whose
coordinator could keep a dead member forever, issue 13). A restarted consumer seeks to
what its database says, and a position that belongs to another incarnation of the log
(another broker cluster id: a broker whose data was lost and formatted anew) means
"read from the start": the inbox turns what is read twice into duplicates, never into a
second effect.
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


@dataclass(frozen=True)
class Position:
    next_offset: int
    log_id: str

    def resume_offset(self, log_id: str) -> int | None:
        """Where to continue in the current log, or None to read it from the start.

        Only the log's name decides: a broker formatted anew has a new cluster id. The
        high watermark is no test: the old embedded broker was seen reporting 11,669 on
        a partition it served up to offset 11,676, and reading from the start there
        re-read whole topics at every restart. A topic recreated under the same cluster
        id answers a fetch beyond its end with OFFSET_OUT_OF_RANGE, and
        ``auto.offset.reset=earliest`` starts it over.
        """
        return self.next_offset if self.log_id == log_id else None


def load(conn: psycopg.Connection[Any], consumer: str) -> dict[TopicPartitionKey, Position]:
    rows = conn.execute(
        "SELECT topic, partition, next_offset, log_id FROM consumer_positions"
        " WHERE consumer = %s", (consumer,),
    ).fetchall()
    return {(topic, partition): Position(offset, log_id)
            for topic, partition, offset, log_id in rows}


def save(conn: psycopg.Connection[Any], consumer: str,
         offsets: Mapping[TopicPartitionKey, int], log_id: str) -> None:
    """Record the next offsets to read; durable at the next WAL flush, not at once.

    ``synchronous_commit = off`` makes this commit free of a disk flush. Losing the
    last positions in a PostgreSQL crash only means reading a few events again, which
    the inbox absorbs; the handlers' own transactions stay fully durable.
    """
    if not offsets:
        return
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        with conn.cursor() as cur:
            cur.executemany(UPSERT, [(consumer, topic, partition, offset, log_id)
                                     for (topic, partition), offset in sorted(offsets.items())])
