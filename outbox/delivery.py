"""One message as the runtime handles it, whether it came from Kafka or from a dead letter.

Keeping this apart from confluent-kafka's ``Message`` lets a replayed dead letter take
exactly the path a fresh delivery takes, and lets pure tests build deliveries by hand.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from choreo.outbox import wire as c


@dataclass(frozen=True)
class Delivery:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)
    broker_ms: int | None = None
    """The record's timestamp in the log (Connect's producer sets it); None for a replay."""
    received_ns: int | None = None
    """Wall-clock time this consumer polled it: with ``ce_time``, the hop's latency."""

    @classmethod
    def from_message(cls, message: Message) -> Delivery:
        raw_key = message.key()
        key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else ""
        headers = {
            name: (value or b"").decode("utf-8", "replace")
            for name, value in (message.headers() or [])
        }
        kind, broker_ms = message.timestamp()
        return cls(message.topic(), message.partition(), message.offset(), key,
                   message.value(), headers,
                   broker_ms if kind != TIMESTAMP_NOT_AVAILABLE else None, time.time_ns())

    @property
    def event_id(self) -> str:
        return self.headers.get(c.HEADER_ID, "")

    @property
    def event_type(self) -> str:
        return self.headers.get(c.HEADER_TYPE, "")

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def parsed_event_id(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.event_id)
        except ValueError:
            return None


@dataclass(frozen=True)
class ReceivedEvent:
    """What a handler gets: the decoded payload plus the CloudEvents attributes."""

    event_id: uuid.UUID
    event_type: str
    aggregate_id: str
    payload: dict[str, Any]
    source: str
    occurred_at: str
    traceparent: str
    origin: str
