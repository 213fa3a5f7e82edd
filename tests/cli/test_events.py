"""``choreo events``: what kcat cannot show, the payloads, decoded by the schema each
record names; as a terminal line or one CloudEvents JSON object per line."""

from __future__ import annotations

import json
import subprocess
import uuid

import psycopg
import pytest

from choreo.stack.settings import StackSettings
from tests.support import WRITER, choreo_cli, collect, confirmed, keyed

pytestmark = pytest.mark.stack


def choreo_events(*args: str) -> subprocess.CompletedProcess[str]:
    return choreo_cli("events", *args)


@pytest.fixture(scope="module")
def published(running_stack: StackSettings) -> tuple[str, str]:
    """An order's OrderConfirmed, on order.events by way of Debezium."""
    order_id = f"o-{uuid.uuid4()}"
    with psycopg.connect(running_stack.database_dsn("orders")) as conn:
        event_id = WRITER.emit(conn, "OrderConfirmed", order_id, confirmed(order_id, 4200))
    collect(running_stack.kafka_bootstrap, "order.events", lambda m: len(m) >= 1,
            accept=keyed(order_id))
    return order_id, str(event_id)


def test_json_prints_the_event_with_its_data_decoded(published: tuple[str, str]) -> None:
    order_id, event_id = published
    shown = choreo_events("order.events", "--key", order_id, "--from-beginning", "--json")
    assert shown.returncode == 0, shown.stderr
    [line] = shown.stdout.splitlines()
    event = json.loads(line)
    assert (event["id"], event["type"], event["source"], event["specversion"]) \
        == (event_id, "OrderConfirmed", "tests", "1.0")
    assert event["dataschema"].startswith("urn:choreo:schema:OrderConfirmed.v1#")
    assert event["data"]["order_id"] == order_id
    assert event["data"]["total_cents"] == 4200
    assert event["partitionkey"] == order_id and event["kafkatopic"] == "order.events"


def test_a_line_per_event_and_the_filters(published: tuple[str, str]) -> None:
    order_id, _ = published
    shown = choreo_events("order.events", "--key", order_id, "--from-beginning")
    assert shown.returncode == 0, shown.stderr
    [line] = shown.stdout.splitlines()
    assert "OrderConfirmed" in line and order_id in line and '"total_cents": 4200' in line
    other_type = choreo_events("order.events", "--key", order_id, "--type", "OrderPlaced",
                               "--from-beginning")
    assert other_type.returncode == 0 and other_type.stdout == ""


def test_an_unknown_topic_is_named(running_stack: StackSettings) -> None:
    shown = choreo_events("no-such.events")
    assert shown.returncode == 1  # what was asked for is not there
    assert "no topic 'no-such.events'" in shown.stderr
