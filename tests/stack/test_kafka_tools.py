"""Kafka's own tools and a third-party client see the embedded broker as any Kafka.

The old embedded broker spoke too little of the protocol for Debian's kcat ("Read
underflow") and had no consumer groups, retention or DeleteRecords for Kafka's tools to
show; Apache Kafka has all of them (docs/stack.md, "Kafka's own tools").
"""

from __future__ import annotations

import re
import shutil
import subprocess

import psycopg
import pytest

from choreo.outbox.kafka import build_admin
from choreo.stack.group_lag import group_lag
from choreo.stack.settings import StackSettings
from choreo.testkit.orders_client import saga_settled
from choreo.testkit.shop import Shop
from tests.support import choreo_cli, eventually, holds

pytestmark = pytest.mark.stack


def choreo_kafka(*args: str) -> subprocess.CompletedProcess[str]:
    return choreo_cli("kafka", *args)


def test_kafka_topics_lists_the_event_topics(running_stack: StackSettings) -> None:
    listed = choreo_kafka("topics", "--describe", "--topic", "order.events")
    assert listed.returncode == 0, listed.stderr
    assert "PartitionCount: 3" in listed.stdout, listed.stdout


def test_kafka_get_offsets_reads_each_partition_end(running_stack: StackSettings) -> None:
    offsets = choreo_kafka("get-offsets", "--topic", "order.events")
    assert offsets.returncode == 0, offsets.stderr
    partitions = re.findall(r"^order\.events:(\d+):\d+$", offsets.stdout, re.MULTILINE)
    assert sorted(partitions) == ["0", "1", "2"], offsets.stdout


def test_an_unknown_tool_is_refused_naming_the_choices() -> None:
    refused = choreo_kafka("no-such-tool")
    assert refused.returncode == 2
    assert "consumer-groups" in refused.stderr


@pytest.mark.skipif(shutil.which("kcat") is None, reason="Debian's kcat is not installed")
def test_debians_kcat_lists_the_broker_and_its_topics(running_stack: StackSettings) -> None:
    listed = subprocess.run(["kcat", "-b", running_stack.kafka_bootstrap, "-L", "-t",
                             "order.events"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert listed.returncode == 0, listed.stderr
    assert 'topic "order.events" with 3 partitions' in listed.stdout, listed.stdout


def test_kafka_consumer_groups_shows_each_consumers_positions_and_lag(
        running_services: StackSettings) -> None:
    """The consumers keep their positions in their own database; they also commit them to
    Kafka under their group id (``outbox.group_offsets``), so Kafka's tools, Burrow or
    kminion see the groups and their lag. What Kafka shows is what the database holds,
    a few seconds late at most."""
    shop = Shop(running_services)
    order_id = shop.place(shop.new_sku(10), 1)
    shop.wait_for(order_id, saga_settled, timeout_s=60)
    with psycopg.connect(running_services.database_dsn("inventory")) as conn:
        stored = {(topic, partition): offset for topic, partition, offset in conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_positions"
            " WHERE consumer = 'inventory' AND topic = 'order.events'")}
    assert stored

    def shown() -> dict[tuple[str, int], int]:
        described = choreo_kafka("consumer-groups", "--describe", "--group", "inventory")
        assert described.returncode == 0, described.stderr
        rows = re.findall(r"^inventory\s+(order\.events)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)",
                          described.stdout, re.MULTILINE)
        return {(topic, int(partition)): int(current)
                for topic, partition, current, _, _ in rows}

    def caught_up() -> bool:
        kafka = shown()
        return all(kafka.get(partition, -1) >= offset for partition, offset in stored.items())

    eventually(lambda: holds(caught_up()), 30)
    # The dashboard's broker-side lag (stack/group_lag.py) reads the same offsets.
    lag = group_lag(build_admin(running_services.kafka), "inventory")
    assert "order.events" in lag and lag["order.events"] >= 0, lag
