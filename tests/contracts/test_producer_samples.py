"""What the producers really put on the topics, sampled from orders on the running stack.

The consumer contract test proves the schemas fit together; this proves the events fit the
schemas and the CloudEvents/W3C headers the consumers rely on, end to end through the
outbox table, Debezium's EventRouter and the broker. One order per saga path, so every
producer code path that a saga run reaches is sampled, the deadline sweeper included.
Each order's history (``GET /orders/{id}``) lists every event of its saga with its id,
which tells when all of them have been read.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import Message
from fastavro import schemaless_reader
from fastavro.validation import validate

from choreo import services
from choreo.cli.contracts import declarations
from choreo.outbox.wire import (
    CLOUDEVENTS_SPECVERSION,
    HEADER_DATASCHEMA,
    HEADER_ID,
    HEADER_SOURCE,
    HEADER_SPECVERSION,
    HEADER_TIME,
    HEADER_TRACEPARENT,
    HEADER_TYPE,
)
from choreo.schemas.catalog import EventSchema, SchemaCatalog, fingerprint_of_reference
from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop
from tests.support import collect

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SERVICES_ROOT = Path(services.__file__).resolve().parent
CATALOG = SchemaCatalog.load()
TOPICS = sorted({CATALOG.latest(event_type).topic for event_type in CATALOG.event_types()})
REQUIRED_HEADERS = (HEADER_ID, HEADER_TYPE, HEADER_SOURCE, HEADER_TIME, HEADER_SPECVERSION,
                    HEADER_DATASCHEMA, HEADER_TRACEPARENT)
TRACEPARENT = re.compile(r"^00-(?!0{32})([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
"""W3C trace context version 00; all-zero trace and span ids are invalid by the spec."""


@dataclass(frozen=True)
class Scenario:
    name: str
    status: str
    """The order's final status."""
    last_events: frozenset[str]
    """Event types the order's history must show before its saga counts as finished."""


SCENARIOS = {scenario.name: scenario for scenario in (
    Scenario("confirmed", "CONFIRMED", frozenset({"OrderConfirmed"})),
    Scenario("declined", "CANCELLED",
             frozenset({"PaymentDeclined", "OrderCancelled", "StockReleased"})),
    Scenario("out_of_stock", "REJECTED", frozenset({"OrderRejected"})),
    Scenario("cancelled_after_confirm", "CANCELLED",
             frozenset({"OrderCancelled", "PaymentRefunded", "StockReleased"})),
    # The order service's deadline job cancels it; the capture that comes late is refunded.
    Scenario("deadline_passed", "CANCELLED",
             frozenset({"OrderCancelled", "PaymentRefunded", "StockReleased"})),
)}



@dataclass(frozen=True)
class SampledEvent:
    topic: str
    key: str
    headers: dict[str, list[str]]
    value: bytes

    @classmethod
    def of(cls, message: Message) -> SampledEvent:
        headers: dict[str, list[str]] = {}
        for name, value in message.headers() or []:
            headers.setdefault(name, []).append(value.decode() if value is not None else "")
        return cls(message.topic(), message.key().decode(), headers, message.value() or b"")

    def header(self, name: str) -> str:
        return self.headers.get(name, [""])[0]

    def __str__(self) -> str:
        return (f"{self.header(HEADER_TYPE) or '?'} {self.header(HEADER_ID) or '?'} "
                f"on {self.topic}")


@dataclass(frozen=True)
class Sample:
    history: dict[str, list[dict[str, Any]]]
    """Each scenario's order history, as the order service recorded it."""
    events: dict[str, list[SampledEvent]]
    """Each scenario's events, as read back from the topics."""


@pytest.fixture(scope="module")
def sample(running_services: StackSettings) -> Iterator[Sample]:
    shop = Shop(running_services)
    try:
        sku = shop.new_sku(available=100, unit_price_cents=700)
        orders = {
            "confirmed": shop.place(sku, 2),
            "declined": shop.place(sku, 1, token="tok_decline"),
            "out_of_stock": shop.place(shop.new_sku(available=1), 3),
            "cancelled_after_confirm": shop.place(sku, 1),
            "deadline_passed": shop.place(sku, 1, token="tok_slow", deadline_s=1),
        }
        shop.wait_for(orders["cancelled_after_confirm"], lambda o: o["status"] == "CONFIRMED")
        assert shop.api.cancel(orders["cancelled_after_confirm"])["status"] == "CANCELLED"
        history = {name: finished(shop, SCENARIOS[name], order_id)["history"]
                   for name, order_id in orders.items()}
        yield Sample(history, read_events(running_services.kafka_bootstrap, orders, history))
    finally:
        shop.api.session.close()
        shop.psp.close()


def finished(shop: Shop, scenario: Scenario, order_id: str) -> dict[str, Any]:
    def done(order: dict[str, Any]) -> bool:
        seen = {entry["event_type"] for entry in order["history"]}
        return order["status"] == scenario.status and scenario.last_events <= seen

    return shop.wait_for(order_id, done)


def read_events(bootstrap: str, orders: dict[str, str],
                history: dict[str, list[dict[str, Any]]]) -> dict[str, list[SampledEvent]]:
    """Every event keyed by one of the orders, until each topic showed all the history
    names; a second more catches any event the histories do not list."""
    scenario_of = {order_id.encode(): name for name, order_id in orders.items()}
    events: dict[str, list[SampledEvent]] = {name: [] for name in orders}
    for topic in TOPICS:
        expected = {entry["event_id"] for entries in history.values() for entry in entries
                    if CATALOG.latest(entry["event_type"]).topic == topic}

        def complete(messages: list[Message], expected: set[str] = expected) -> bool:
            return expected <= {SampledEvent.of(m).header(HEADER_ID) for m in messages}

        for message in collect(bootstrap, topic, complete, timeout_s=60, settle_s=1.0,
                               accept=lambda m: m.key() in scenario_of):
            events[scenario_of[message.key()]].append(SampledEvent.of(message))
    return events


SCENARIO_NAMES = list(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_every_event_of_the_order_was_read(sample: Sample, scenario: str) -> None:
    recorded = {entry["event_id"]: entry["event_type"] for entry in sample.history[scenario]}
    read = {event.header(HEADER_ID): event.header(HEADER_TYPE)
            for event in sample.events[scenario]}

    missing = {i: t for i, t in recorded.items() if i not in read}
    assert not missing, f"{scenario}: recorded in the order's history, never read: {missing}"
    assert set(recorded.values()) >= SCENARIOS[scenario].last_events


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_cloudevents_headers(sample: Sample, scenario: str) -> None:
    emitters: dict[str, set[str]] = {}
    for declaration in declarations():
        for event_type in declaration.emits:
            emitters.setdefault(event_type, set()).add(declaration.service)
    problems = [f"{scenario}: {event}: {problem}" for event in sample.events[scenario]
                for problem in header_problems(event, emitters)]

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_traceparent_is_w3c(sample: Sample, scenario: str) -> None:
    malformed = [f"{event}: traceparent {event.headers.get(HEADER_TRACEPARENT)!r}"
                 for event in sample.events[scenario]
                 if len(event.headers.get(HEADER_TRACEPARENT, [])) != 1
                 or not TRACEPARENT.match(event.header(HEADER_TRACEPARENT))]

    assert not malformed, f"{scenario}:\n" + "\n".join(malformed)


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_payloads_decode_and_fit_the_latest_schema(sample: Sample, scenario: str) -> None:
    problems = [f"{scenario}: {event}: {problem}" for event in sample.events[scenario]
                for problem in payload_problems(event)]

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_one_trace_per_order(sample: Sample, scenario: str) -> None:
    traces: dict[str, list[str]] = {}
    for event in sample.events[scenario]:
        match = TRACEPARENT.match(event.header(HEADER_TRACEPARENT))
        traces.setdefault(match[1] if match else "(none)", []).append(str(event))

    assert len(traces) == 1, f"{scenario}: events of one order in several traces: {traces}"


def header_problems(event: SampledEvent, emitters: dict[str, set[str]]) -> list[str]:
    """Everything wrong with the CloudEvents headers of one event (the traceparent apart)."""
    problems = [f"header {name} appears {len(event.headers.get(name, []))} times, not once"
                for name in REQUIRED_HEADERS if len(event.headers.get(name, [])) != 1]
    event_id, event_type = event.header(HEADER_ID), event.header(HEADER_TYPE)
    try:
        if str(uuid.UUID(event_id)) != event_id:
            problems.append(f"ce_id {event_id!r} is not a UUID in canonical form")
    except ValueError:
        problems.append(f"ce_id {event_id!r} is not a UUID")
    if event.header(HEADER_SPECVERSION) != CLOUDEVENTS_SPECVERSION:
        problems.append(f"ce_specversion {event.header(HEADER_SPECVERSION)!r} is not "
                        f"{CLOUDEVENTS_SPECVERSION}")
    problems.extend(time_problems(event.header(HEADER_TIME)))
    source = event.header(HEADER_SOURCE)
    if source not in emitters.get(event_type, set()):
        problems.append(f"ce_source {source!r} is not a service that emits {event_type!r} "
                        f"(by the declarations: {sorted(emitters.get(event_type, set()))})")
    writer = writer_schema(event)
    if writer is None:
        problems.append(f"ce_dataschema {event.header(HEADER_DATASCHEMA)!r} names no schema")
    elif (writer.event_type, writer.topic) != (event_type, event.topic):
        problems.append(f"ce_dataschema {writer.reference} is for {writer.event_type} on "
                        f"{writer.topic}, not {event_type} on {event.topic}")
    return problems


def time_problems(value: str) -> list[str]:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return [f"ce_time {value!r} is not ISO-8601"]
    return [] if moment.tzinfo is not None else [f"ce_time {value!r} has no time zone"]


def writer_schema(event: SampledEvent) -> EventSchema | None:
    """The schema ``ce_dataschema`` names, if it names it exactly (readable part included)."""
    reference = event.header(HEADER_DATASCHEMA)
    schema = CATALOG.by_fingerprint(fingerprint_of_reference(reference))
    return schema if schema is not None and schema.reference == reference else None


def payload_problems(event: SampledEvent) -> list[str]:
    writer = writer_schema(event)
    if writer is None:
        return [f"no writer schema for ce_dataschema {event.header(HEADER_DATASCHEMA)!r}"]
    data = io.BytesIO(event.value)
    try:
        record = schemaless_reader(data, writer.parsed, None)
    except Exception as error:  # noqa: BLE001 - corrupt bytes surface as many error types
        return [f"does not decode with {writer.reference}: {error!r}"]
    problems = []
    if data.tell() != len(event.value):
        problems.append(f"{len(event.value) - data.tell()} bytes left after decoding with "
                        f"{writer.reference}")
    latest = CATALOG.latest(writer.event_type)
    try:
        validate(record, latest.parsed, raise_errors=True)
    except Exception as error:  # noqa: BLE001 - fastavro's ValidationError names the field
        problems.append(f"does not validate against the latest {latest.reference}: {error}")
    if isinstance(record, dict) and record.get("order_id") != event.key:
        problems.append(f"payload order_id {record.get('order_id')!r} is not the key "
                        f"{event.key!r}")
    return problems


def test_a_cloudevents_sdk_reads_every_sampled_event(sample: Sample) -> None:
    """The CloudEvents SDK's Kafka binding (binary mode), on every event of every saga
    path as it came off its topic: the content type of its Avro data, and a dataschema
    that is an absolute URI, on every topic the saga writes."""
    problems, topics = [], set()
    for event in (event for events in sample.events.values() for event in events):
        topics.add(event.topic)
        read = kafka_binding.from_binary(kafka_binding.KafkaMessage(
            {name: values[0].encode() for name, values in event.headers.items()},
            event.key, event.value), JSONFormat())
        schema = urlsplit(read.get_dataschema() or "")
        if read.get_datacontenttype() != "application/avro":
            problems.append(f"{event}: datacontenttype {read.get_datacontenttype()!r}")
        if not (schema.scheme and schema.fragment):
            problems.append(f"{event}: dataschema {read.get_dataschema()!r} is not absolute")
        if read.get_type() != event.header(HEADER_TYPE) or read.get_id() != event.header(
                HEADER_ID):
            problems.append(f"{event}: read as {read.get_type()} {read.get_id()}")
    assert not problems, "\n".join(problems)
    assert topics >= {"order.events", "inventory.events", "payment.events"}, topics
