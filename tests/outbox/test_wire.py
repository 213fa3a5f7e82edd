"""The wire contract in one place: the connector's template and ``outbox.wire`` agree.

Pure: the template is read as JSON, the DDL as text. The records themselves are
compared with what Debezium really publishes in tests/outbox/test_republish.py and
tests/contracts/test_producer_samples.py.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from choreo.outbox import ConfigError, wire
from choreo.stack.connectors import heartbeat_topic

VALUES = {"database": "orders", "postgres_host": "127.0.0.1", "postgres_port": "15432",
          "postgres_user": "postgres", "postgres_password": "", "poll_interval_ms": "10"}


@pytest.fixture(scope="module")
def router() -> dict[str, str]:
    """The EventRouter's settings, ``transforms.outbox.`` taken off."""
    config = wire.render(wire.OUTBOX_TEMPLATE, VALUES)["config"]
    return {key.removeprefix("transforms.outbox."): value for key, value in config.items()
            if key.startswith("transforms.outbox.")}


def test_the_connector_puts_each_column_in_the_header_the_relays_use(
        router: dict[str, str]) -> None:
    placement = dict(part.split(":header:")
                     for part in router["table.fields.additional.placement"].split(","))
    assert placement == wire.HEADER_OF_COLUMN


def test_the_connector_routes_keys_and_payloads_as_the_relays_do(
        router: dict[str, str]) -> None:
    assert router["route.by.field"] == "aggregatetype"
    assert router["route.topic.replacement"] == "${routedByValue}" + wire.EVENTS_TOPIC_SUFFIX
    assert (router["table.field.event.id"], router["table.field.event.key"],
            router["table.field.event.payload"]) == ("id", "aggregateid", "payload")
    assert set(wire.HEADER_OF_COLUMN) | {"aggregatetype", "aggregateid", "payload"} \
        == set(wire.ROW_COLUMNS)


def test_every_column_of_the_row_is_in_the_outbox_table() -> None:
    ddl = wire.OUTBOX_DDL.read_text()
    table = re.search(r"CREATE TABLE IF NOT EXISTS outbox \((.*?)\n\);", ddl, re.S)
    assert table is not None
    declared = {line.split()[0] for line in table[1].strip().splitlines()}
    assert set(wire.ROW_COLUMNS) <= declared
    assert wire.INSERT_ROW.count("%s") == len(wire.ROW_COLUMNS)


def test_a_row_becomes_the_record_the_router_makes() -> None:
    event_id, traceparent = uuid.uuid4(), f"00-{'1' * 32}-{'2' * 16}-01"
    row = (event_id, "order", "o-1", "OrderPlaced", b"\x02avro", "OrderPlaced.v1#abc",
           "orders", "1.0", "2026-12-07T10:00:00.000000Z", traceparent)

    topic, key, value, headers = wire.record_of(row)

    assert (topic, key, value) == ("order.events", "o-1", b"\x02avro")
    assert headers == [(name, text.encode()) for name, text in [
        ("id", str(event_id)), ("ce_id", str(event_id)), ("ce_type", "OrderPlaced"),
        ("ce_source", "orders"), ("ce_time", "2026-12-07T10:00:00.000000Z"),
        ("ce_specversion", "1.0"), ("ce_dataschema", "OrderPlaced.v1#abc"),
        ("traceparent", traceparent), ("content-type", "application/avro")]]


def test_the_connector_gives_every_event_the_content_type_the_relays_give() -> None:
    config = wire.render(wire.OUTBOX_TEMPLATE, VALUES)["config"]
    assert config["transforms"].split(",")[-1] == "contentType"  # after the routing
    assert (config["transforms.contentType.header"],
            config["transforms.contentType.value.literal"]) \
        == (wire.HEADER_CONTENT_TYPE, wire.AVRO_CONTENT_TYPE)
    pattern = config[f"predicates.{config['transforms.contentType.predicate']}.pattern"]
    assert re.fullmatch(pattern, wire.topic_of("order"))
    assert not re.fullmatch(pattern, heartbeat_topic("orders"))


def test_a_template_with_an_unknown_placeholder_is_refused_naming_it(tmp_path: Path) -> None:
    template = tmp_path / "bad.json"
    template.write_text(wire.OUTBOX_TEMPLATE.read_text().replace("{{database}}", "{{databse}}", 1))
    with pytest.raises(ConfigError, match="bad.json: unknown placeholder.*databse"):
        wire.render(template, VALUES)


@pytest.mark.parametrize(("text", "message"), [
    ('{"name": "x", "config": {', "bad.json is not valid JSON"),
    ('{"name": "x", "config": {}, "tasks": []}', "expected exactly the keys 'name' and 'config'"),
])
def test_a_template_that_is_not_a_connector_is_refused(tmp_path: Path, text: str,
                                                        message: str) -> None:
    template = tmp_path / "bad.json"
    template.write_text(text)
    with pytest.raises(ConfigError, match=message):
        wire.render(template, {})
