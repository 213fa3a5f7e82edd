"""Driving a consumer runtime's batch logic without a broker, for tests of services and of
the runtime itself (as faststream's test broker does for its handlers).

``drive`` hands deliveries built here, byte for byte what Debezium's EventRouter puts
on a topic, to ``ConsumerRuntime.process_batch``: batching, the inbox, retries, dead
letters, parking behind them and their release all run for real against the runtime's
PostgreSQL, while the dead-letter topic is a recording producer. No Kafka, no Connect.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from choreo.outbox import constants as c
from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime
from choreo.outbox.delivery import Delivery
from choreo.outbox.writer import OutboxRow, OutboxWriter


@dataclass(frozen=True)
class Emitted:
    event_type: str
    aggregate_id: str
    payload: dict[str, Any]


class RecordingWriter(OutboxWriter):
    """The real writer (schema validation, outbox insert) that also remembers each event
    written, by ``emit`` or ``writing``, for tests that drive handlers directly and ask
    what they emitted."""

    def __init__(self, codec: EventCodec, source: str) -> None:
        super().__init__(codec, source)
        self.emitted: list[Emitted] = []

    @contextmanager
    def writing(self, event_type: str, aggregate_id: str, payload: Mapping[str, Any]
                ) -> Iterator[OutboxRow]:
        with super().writing(event_type, aggregate_id, payload) as row:
            yield row
        self.emitted.append(Emitted(event_type, aggregate_id, dict(payload)))

    def of(self, order_id: str) -> list[Emitted]:
        return [e for e in self.emitted if e.aggregate_id == order_id]


@dataclass
class RecordingProducer:
    """Stands in for the dead-letter topic's producer: every record it was given."""

    records: list[tuple[str, str, bytes | None, dict[str, str]]] = field(default_factory=list)

    def produce(self, topic: str, key: str | bytes | None = None, value: bytes | None = None,
                headers: Mapping[str, str | bytes] | Sequence[tuple[str, str | bytes]]
                | None = None, **_: object) -> None:
        pairs = headers.items() if isinstance(headers, Mapping) else headers or []
        decoded = {name: v.decode() if isinstance(v, bytes) else v for name, v in pairs}
        key_text = key.decode() if isinstance(key, bytes) else key or ""
        self.records.append((topic, key_text, value, decoded))

    def flush(self, timeout: float | None = None) -> int:
        return 0

    def poll(self, timeout: float | None = None) -> int:
        return 0


class EventStream:
    """Deliveries of schema-valid events, as EventRouter writes them, with rising offsets."""

    def __init__(self, codec: EventCodec, source: str = "tests") -> None:
        self.codec = codec
        self.source = source
        self.offsets: dict[tuple[str, int], int] = {}

    def delivery(self, event_type: str, key: str, payload: Mapping[str, Any], *,
                 partition: int = 0, event_id: uuid.UUID | None = None) -> Delivery:
        value, schema = self.codec.encode(event_type, payload)
        topic = schema.topic
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        headers = {c.HEADER_ID: str(event_id or uuid.uuid4()), c.HEADER_TYPE: event_type,
                   c.HEADER_SOURCE: self.source, c.HEADER_SPECVERSION: c.CLOUDEVENTS_SPECVERSION,
                   c.HEADER_DATASCHEMA: schema.reference,
                   c.HEADER_TIME: datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        return Delivery(topic, partition, offset, key, value, headers)


def drive(runtime: ConsumerRuntime, deliveries: Sequence[Delivery]) -> list[str]:
    """Run one polled batch through the runtime; returns each delivery's outcome.

    Build the runtime with ``producer=RecordingProducer()`` to see its dead letters
    without a broker.
    """
    runtime.ensure_session()
    return runtime.process_batch(list(deliveries))


def release(runtime: ConsumerRuntime, owned: set[tuple[str, int]]) -> None:
    """Carry out pending ``choreo dlq replay|discard`` requests for the partitions ``owned``."""
    runtime.process_requests(owned)
