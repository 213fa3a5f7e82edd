"""``choreo events TOPIC``: a topic's records as decoded CloudEvents.

kcat and Kafka's console consumer show the headers but not the payloads: those are Avro's
binary encoding without framing, readable only with the writer schema that
``ce_dataschema`` names. This reads the topic with choreo's own catalog and prints each
event's attributes and data, one line each, or one CloudEvents JSON object per line with
``--json`` (the structured format's fields, the data decoded, and where the record is in
Kafka as the extension attributes ``kafkatopic``, ``kafkapartition``, ``kafkaoffset``).
It joins no group and commits nothing: reading is free of side effects.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from choreo.outbox import wire
from choreo.outbox.codec import EventCodec
from choreo.outbox.errors import PoisonMessage
from choreo.outbox.kafka import build_unmanaged_consumer
from choreo.schemas.catalog import SchemaCatalog
from choreo.stack.settings import StackSettings

POLL_S = 0.5
IDLE_S = 15.0


@dataclass(frozen=True)
class Window:
    """Where to start in each partition and, unless following, where to stop."""
    starts: list[TopicPartition]
    ends: dict[int, int]


class NoSuchTopic(Exception):
    """What was asked for is not there: exit status 1, not a usage error."""


def window(consumer: Consumer, topic: str, from_beginning: bool, last: int) -> Window:
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise NoSuchTopic(f"no topic {topic!r} on the broker (choreo kafka topics --list)")
    starts, ends = [], {}
    for number in sorted(metadata.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=10)
        start = low if from_beginning else max(low, high - last)
        starts.append(TopicPartition(topic, number, start))
        ends[number] = high
    return Window(starts, ends)


def records(consumer: Consumer, span: Window, follow: bool) -> Iterator[Message]:
    """The window's records, partition by partition as they come; until each partition's
    position reaches its end as it was at the start (a transaction marker or a record
    deleted by retention has no message of its own, so positions count, not records),
    or for ever when following. Without ``--follow``, ``IDLE_S`` without progress ends it
    too (a partition whose leader is away)."""
    consumer.assign(span.starts)
    behind = {start.partition for start in span.starts
              if span.ends[start.partition] > start.offset}
    topic = span.starts[0].topic
    progress_at = time.monotonic()
    while follow or behind:
        message = consumer.poll(POLL_S)
        if message is not None and message.error() is None and (
                follow or message.offset() < span.ends[message.partition()]):
            progress_at = time.monotonic()
            yield message
        if follow:
            continue
        positions = consumer.position([TopicPartition(topic, number) for number in behind])
        behind -= {tp.partition for tp in positions if tp.offset >= span.ends[tp.partition]}
        if behind and time.monotonic() - progress_at > IDLE_S:
            print(f"choreo: stopped waiting for partitions {sorted(behind)} of {topic}:"
                  f" nothing came for {IDLE_S:.0f}s", file=sys.stderr)
            return


def headers_of(message: Message) -> dict[str, str]:
    return {name: value.decode("utf-8", "replace") for name, value in message.headers() or []
            if value is not None}


def as_event(message: Message, codec: EventCodec) -> dict[str, Any]:
    """The record in CloudEvents' JSON format, the data decoded (or the reason it could
    not be, with the raw bytes in hex)."""
    headers = headers_of(message)
    event: dict[str, Any] = {
        name.removeprefix("ce_"): value for name, value in headers.items()
        if name.startswith("ce_")}
    if wire.HEADER_CONTENT_TYPE in headers:
        event["datacontenttype"] = "application/json"  # the data below, decoded
    if wire.HEADER_TRACEPARENT in headers:
        event["traceparent"] = headers[wire.HEADER_TRACEPARENT]
    key = message.key()
    event.update(partitionkey=key.decode("utf-8", "replace") if key else None,
                 kafkatopic=message.topic(), kafkapartition=message.partition(),
                 kafkaoffset=message.offset())
    try:
        event["data"] = codec.decode(headers.get(wire.HEADER_TYPE, ""),
                                     headers.get(wire.HEADER_DATASCHEMA, ""),
                                     message.value() or b"")
    except PoisonMessage as error:
        event.update(undecodable=str(error), data_hex=(message.value() or b"").hex())
    return event


def line_of(event: dict[str, Any]) -> str:
    where = f"{event['kafkatopic']}/{event['kafkapartition']}@{event['kafkaoffset']}"
    data = event.get("data", event.get("undecodable"))
    return (f"{event.get('time', '-'):<28} {where:<22} {event.get('type', '?'):<20}"
            f" {event.get('partitionkey') or '-':<38} {json.dumps(data, default=str)}")


def wanted(message: Message, key: str | None, event_type: str | None) -> bool:
    if key is not None and (message.key() or b"").decode("utf-8", "replace") != key:
        return False
    return event_type is None or headers_of(message).get(wire.HEADER_TYPE) == event_type


def cmd_events(args: argparse.Namespace, settings: StackSettings) -> int:
    codec = EventCodec(SchemaCatalog.load())
    consumer = build_unmanaged_consumer(settings.kafka, f"choreo-events-{uuid.uuid4().hex}")
    shown = 0
    try:
        try:
            span = window(consumer, args.topic, args.from_beginning, args.last)
        except NoSuchTopic as missing:
            print(f"choreo: {missing}", file=sys.stderr)
            return 1
        for message in records(consumer, span, args.follow):
            if not wanted(message, args.key, args.type):
                continue
            event = as_event(message, codec)
            print(json.dumps(event, default=str) if args.json else line_of(event), flush=True)
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if not shown and not args.json:
        print(f"no events on {args.topic} in that window", file=sys.stderr)
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    events = commands.add_parser(
        "events", help="a topic's records as decoded CloudEvents (kcat shows only bytes)",
        description="Print a topic's events with their payloads decoded by the schema each"
        " names. Reads without a consumer group and commits nothing.")
    events.add_argument("topic", help="the topic, e.g. order.events or payments.dlq")
    events.add_argument("--key", help="only this aggregate key (an order id, a customer id)")
    events.add_argument("--type", help="only this event type, e.g. OrderPlaced")
    events.add_argument("--from-beginning", action="store_true",
                        help="every record kept, not only the last --last per partition")
    events.add_argument("--last", type=int, default=10, metavar="N",
                        help="records per partition to start from before the end (default 10)")
    events.add_argument("--follow", action="store_true",
                        help="keep printing new events until interrupted")
    events.add_argument("--json", action="store_true",
                        help="one CloudEvents JSON object per line (data decoded)")
    events.set_defaults(handler=cmd_events)
