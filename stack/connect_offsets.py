"""Connect's offsets belong to one PostgreSQL cluster: a new cluster starts them afresh.

Debezium's offset is an LSN of the cluster it streamed from. If that cluster is replaced
(its data folder deleted, a backup of another one restored) while the offsets file
stays, the stored LSN can lie ahead of the new cluster's whole WAL: Debezium then streams
from the slot but drops every change below the stored LSN ("LSN flushing is not allowed
yet"), and every event written until the new WAL passes it is silently lost (seen after
``rm -r .choreo/postgres``: Connect RUNNING, consumers at lag 0, no event ever
published). So the file is tagged with the cluster's system identifier, which ``initdb``
draws anew, and dropped before Connect starts when the cluster is another one; the slots
of the new cluster, created before any service writes, then give Debezium its start.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from choreo.stack.settings import StackSettings

CLUSTER_ID = "SELECT system_identifier::text FROM pg_control_system()"


def cluster_tag(offsets: Path) -> Path:
    return offsets.with_suffix(".cluster")


def forget_offsets_of_another_cluster(settings: StackSettings, offsets: Path) -> bool:
    """Delete ``offsets`` if they were written against another cluster; tag them with this
    one. Returns whether they were deleted. An untagged file (written before tagging
    existed) is kept and tagged: it can only be this cluster's."""
    with psycopg.connect(settings.database_dsn("postgres"), connect_timeout=5) as conn:
        cluster = conn.execute(CLUSTER_ID).fetchone()[0]
    tag = cluster_tag(offsets)
    recorded = tag.read_text().strip() if tag.exists() else cluster
    forgotten = recorded != cluster and offsets.exists()
    if forgotten:
        offsets.unlink()
    tag.parent.mkdir(parents=True, exist_ok=True)
    tag.write_text(f"{cluster}\n")
    return forgotten
