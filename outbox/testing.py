"""What a participant's tests need, on two levels (docs/library.md).

- ``InMemoryHandlers``: a handler's logic with no database and no broker, as faststream's
  test broker does: deliver a schema-valid event, see what it emitted and the SQL it ran.
- ``drive``: the runtime's batch logic without a broker. Deliveries built here, byte for
  byte what Debezium's EventRouter puts on a topic, go to ``ConsumerRuntime.process_batch``:
  batching, the inbox, retries, dead letters, parking behind them and their release all
  run for real against the runtime's PostgreSQL, while the dead-letter topic is a
  recording producer. That is where the guarantees live.

``DedupeStoreContract`` is the suite every ``DedupeStore`` passes; a team's own store
subclasses it in its tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from choreo.outbox import wire as c
from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime, Handler
from choreo.outbox.dedupe import DedupeStore
from choreo.outbox.delivery import Delivery, ReceivedEvent
from choreo.outbox.writer import OutboxRow, OutboxWriter
from choreo.schemas.catalog import SchemaCatalog


@dataclass(frozen=True)
class Emitted:
    event_type: str
    aggregate_id: str
    payload: dict[str, Any]


class RecordingWriter(OutboxWriter):
    """The real writer (schema validation, outbox insert) that also remembers each event
    written, by ``emit`` or ``writing``, for tests that drive handlers directly and ask
    what they emitted. ``emits`` as the writer's: the service's declaration, refused
    otherwise (None: any type of the catalog)."""

    def __init__(self, codec: EventCodec, source: str,
                 emits: Collection[str] | None = None) -> None:
        super().__init__(codec, source, emits=emits)
        self.emitted: list[Emitted] = []

    @contextmanager
    def writing(self, event_type: str, aggregate_id: str, payload: Mapping[str, Any]
                ) -> Iterator[OutboxRow]:
        with super().writing(event_type, aggregate_id, payload) as row:
            yield row
        self.emitted.append(Emitted(event_type, aggregate_id, dict(payload)))

    def of(self, aggregate_id: str) -> list[Emitted]:
        return [e for e in self.emitted if e.aggregate_id == aggregate_id]


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
                   c.HEADER_CONTENT_TYPE: c.AVRO_CONTENT_TYPE,
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


@dataclass
class InMemoryConnection:
    """Stands in for the connection a handler is given: records each statement, through
    ``execute`` or a cursor alike, and answers every read with no rows. A handler whose
    logic depends on what it reads belongs in a ``drive`` test, against PostgreSQL."""

    statements: list[tuple[str, Any]] = field(default_factory=list)
    rowcount: int = 0

    def execute(self, query: str, params: Any = None) -> InMemoryConnection:
        self.statements.append((query, params))
        return self

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def cursor(self, **_: object) -> InMemoryConnection:
        return self

    def __enter__(self) -> InMemoryConnection:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield None


class InMemoryHandlers:
    """A service's handlers on a recording writer, driven without a database or a broker.

    ``deliver`` encodes the payload with the event's schema and decodes it again, so the
    handler gets exactly what a consumer would, and an event the schema does not allow
    fails here as it would at the producer. What the handler emits is validated against
    its own schema by the real writer and returned; with ``emits`` (the service's
    declaration) an undeclared type is refused as the service's own writer would.
    """

    def __init__(self, build_handlers: Callable[[OutboxWriter], dict[str, Handler]],
                 schemas: Path, source: str = "tests", *,
                 emits: Collection[str] | None = None) -> None:
        self.codec = EventCodec(SchemaCatalog.load(schemas))
        self.writer = RecordingWriter(self.codec, source, emits)
        self.handlers = build_handlers(self.writer)
        self.connection = InMemoryConnection()

    def deliver(self, event_type: str, aggregate_id: str, payload: Mapping[str, Any]
                ) -> list[Emitted]:
        data, schema = self.codec.encode(event_type, payload)
        event = ReceivedEvent(
            event_id=uuid.uuid4(), event_type=event_type, aggregate_id=aggregate_id,
            payload=self.codec.decode(event_type, schema.reference, data), source="tests",
            occurred_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            traceparent="", origin=f"{schema.topic}/0@0")
        before = len(self.writer.emitted)
        self.handlers[event_type](event, self.connection)  # type: ignore[arg-type]
        return self.writer.emitted[before:]


class DedupeStoreContract:
    """The contract of every ``DedupeStore``; subclass it with ``make_store`` (and
    ``remembers = False`` for a store that remembers nothing) in a class pytest collects:

        class TestMyStore(DedupeStoreContract):
            def make_store(self) -> DedupeStore:
                return MyStore(...)

    The inbox is the guarantee, so a store may forget (TTL, eviction, an outage); what it
    must never do is answer "seen" for an event nobody marked, or mix up consumers. A
    store that remembers must remember what was marked, one at a time or in a batch.
    """

    remembers = True

    def make_store(self) -> DedupeStore:
        raise NotImplementedError("a subclass builds the store under test")

    @staticmethod
    def _ids(count: int) -> list[str]:
        return [str(uuid.uuid4()) for _ in range(count)]

    @staticmethod
    def _consumer() -> str:
        return f"c-{uuid.uuid4().hex[:8]}"

    def test_nothing_unmarked_is_ever_seen(self) -> None:
        store, consumer = self.make_store(), self._consumer()
        marked, unmarked = self._ids(3), self._ids(3)
        store.mark_many(consumer, marked)
        assert not any(store.seen(consumer, event_id) for event_id in unmarked)
        assert store.seen_many(consumer, unmarked) == set()
        assert store.seen_many(consumer, []) == set()
        store.mark_many(consumer, [])  # nothing to do is no error

    def test_one_consumer_marks_nothing_for_another(self) -> None:
        store, first, second = self.make_store(), self._consumer(), self._consumer()
        event_ids = self._ids(2)
        store.mark_many(first, event_ids)
        store.mark(first, event_ids[0])
        assert store.seen_many(second, event_ids) == set()
        assert not store.seen(second, event_ids[0])

    def test_what_was_marked_is_seen_singly_and_in_batches(self) -> None:
        if not self.remembers:
            return
        store, consumer = self.make_store(), self._consumer()
        single, batch, fresh = self._ids(1)[0], self._ids(4), self._ids(2)
        store.mark(consumer, single)
        store.mark_many(consumer, batch)
        assert store.seen(consumer, single)
        assert all(store.seen(consumer, event_id) for event_id in batch)
        assert store.seen_many(consumer, [single, *batch, *fresh]) == {single, *batch}
