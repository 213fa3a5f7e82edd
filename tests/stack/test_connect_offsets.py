"""Connect's offsets file is dropped when PostgreSQL is another cluster than the one it
was written against (its data folder recreated): its LSNs would lie ahead of the new WAL
and Debezium would drop every change until the WAL caught up."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreo.stack.connect_offsets import cluster_tag, forget_offsets_of_another_cluster
from choreo.stack.settings import StackSettings

pytestmark = pytest.mark.postgres


def test_offsets_of_another_cluster_are_dropped_and_this_clusters_kept(
        running_postgres: StackSettings, tmp_path: Path) -> None:
    offsets = tmp_path / "offsets.dat"
    offsets.write_bytes(b"LSN{0/FAF0348}")
    assert not forget_offsets_of_another_cluster(running_postgres, offsets)  # untagged: kept
    assert offsets.exists() and cluster_tag(offsets).exists()

    assert not forget_offsets_of_another_cluster(running_postgres, offsets)  # same cluster
    assert offsets.exists()

    cluster_tag(offsets).write_text("7000000000000000001\n")  # written against another one
    assert forget_offsets_of_another_cluster(running_postgres, offsets)
    assert not offsets.exists()
    assert cluster_tag(offsets).read_text().strip() != "7000000000000000001"
