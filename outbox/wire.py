"""The wire contract: what an outbox row is, and the Kafka record it becomes.

Everything another program must agree on to read choreo's events, or to publish them
the way choreo does, is here and nowhere else: the outbox table (``OUTBOX_DDL``) and the
insert the writer runs, the Debezium connector that routes rows to topics
(``OUTBOX_TEMPLATE`` and :func:`render`), the record a row becomes
(:func:`record_of`, what the polling relay and a republish after a broker loss send, the
same as the connector's), the CloudEvents header names, and the dead-letter headers.
``tests/outbox/test_wire.py`` checks that the connector's template and this module say
the same; docs/outbox.md ("The wire contract") describes it.

A record on ``<aggregatetype>.events``: key the aggregate id; value the Avro payload in
the writer schema's binary encoding (no framing); headers ``ce_id``, ``ce_type``,
``ce_source``, ``ce_time``, ``ce_specversion``, ``ce_dataschema`` (an absolute URI),
``content-type: application/avro`` (CloudEvents' Kafka binding, binary mode, which any
CloudEvents SDK reads) and W3C ``traceparent``. The connector also adds an ``id`` header
(EventRouter's own), which the Python relays copy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from choreo.connectors import TEMPLATE_DIR
from choreo.outbox.errors import ConfigError

OUTBOX_DDL = Path(__file__).resolve().parent / "schema.sql"
"""The library's tables (outbox, inbox, positions, dead letters, the publication);
idempotent, applied at every start before the service's own."""

ROW_COLUMNS = ("id", "aggregatetype", "aggregateid", "type", "payload", "dataschema",
               "source", "specversion", "occurred_at", "traceparent")
"""An event's columns in the outbox, in the order :func:`record_of` takes them."""
INSERT_ROW = (f"INSERT INTO outbox ({', '.join(ROW_COLUMNS)})"
              f" VALUES ({', '.join(['%s'] * len(ROW_COLUMNS))})")
SELECT_ROWS = f"SELECT {', '.join(ROW_COLUMNS)} FROM outbox"

# CloudEvents Kafka protocol binding, binary content mode (attributes as headers).
HEADER_ID = "ce_id"
HEADER_TYPE = "ce_type"
HEADER_SOURCE = "ce_source"
HEADER_TIME = "ce_time"
HEADER_SPECVERSION = "ce_specversion"
HEADER_DATASCHEMA = "ce_dataschema"
HEADER_TRACEPARENT = "traceparent"
HEADER_CONTENT_TYPE = "content-type"
"""The binding's header for ``datacontenttype``: the value is Avro's binary encoding."""
AVRO_CONTENT_TYPE = "application/avro"
CLOUDEVENTS_SPECVERSION = "1.0"
ROUTER_ID_HEADER = "id"
"""EventRouter's own header with the event id, before the CloudEvents ones."""

HEADER_OF_COLUMN = {"id": HEADER_ID, "type": HEADER_TYPE, "source": HEADER_SOURCE,
                    "occurred_at": HEADER_TIME, "specversion": HEADER_SPECVERSION,
                    "dataschema": HEADER_DATASCHEMA, "traceparent": HEADER_TRACEPARENT}
"""The connector's ``table.fields.additional.placement``: column -> header."""

# Added to a dead letter next to the original headers.
HEADER_DLQ_REASON = "dlq_reason"
HEADER_DLQ_CONSUMER = "dlq_consumer"
HEADER_DLQ_ATTEMPTS = "dlq_attempts"
HEADER_DLQ_ORIGIN = "dlq_origin"

DEAD_LETTER_TOPIC_SUFFIX = ".dlq"
EVENTS_TOPIC_SUFFIX = ".events"

OUTBOX_TEMPLATE = TEMPLATE_DIR / "outbox-postgres.json"
"""The outbox connector: Debezium's PostgreSQL source with the EventRouter, in Connect's
JSON format with ``{{placeholders}}`` (``choreo connectors render`` fills them)."""
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

Record = tuple[str, str, bytes, list[tuple[str, bytes]]]


def topic_of(aggregate: str) -> str:
    """The topic EventRouter routes an aggregate type's rows to (``route.topic.replacement``)."""
    return f"{aggregate}{EVENTS_TOPIC_SUFFIX}"


def record_of(row: tuple[Any, ...]) -> Record:
    """(topic, key, value, headers) of one outbox row (``ROW_COLUMNS``), as the EventRouter
    routes it."""
    values = dict(zip(ROW_COLUMNS, row, strict=True))
    headers = [(ROUTER_ID_HEADER, str(values["id"]))] + [
        (header, str(values[column])) for column, header in HEADER_OF_COLUMN.items()] + [
        (HEADER_CONTENT_TYPE, AVRO_CONTENT_TYPE)]
    return (topic_of(values["aggregatetype"]), values["aggregateid"], bytes(values["payload"]),
            [(name, value.encode()) for name, value in headers])


def render(template: Path, values: Mapping[str, str]) -> dict[str, Any]:
    """A connector template with its ``{{name}}`` placeholders filled: ``{"name", "config"}``
    as Connect's REST API takes it. An unknown placeholder is an error, not an empty string."""
    text = template.read_text()
    unknown = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if unknown:
        raise ConfigError(f"{template.name}: unknown placeholder(s) {', '.join(unknown)}")
    try:
        rendered = json.loads(PLACEHOLDER.sub(lambda m: values[m.group(1)], text))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{template.name} is not valid JSON: {error}") from None
    if set(rendered) != {"name", "config"}:
        raise ConfigError(f"{template.name}: expected exactly the keys 'name' and 'config'")
    return rendered

