"""Avro binary payloads with the writer's schema named in a header.

Producers always write with the latest schema version they know; the header
``ce_dataschema`` carries that version's fingerprint. Consumers resolve the writer
schema by fingerprint and read into their own reader schema, so either side can be
upgraded first as long as ``choreo schemas check`` passes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import validate

from choreo.outbox.errors import EventValidationError, PoisonMessage
from choreo.schemas.catalog import EventSchema, SchemaCatalog, fingerprint_of_reference


class EventCodec:
    def __init__(self, catalog: SchemaCatalog, reader_versions: Mapping[str, int] | None = None):
        """``reader_versions`` pins an event type to an older reader schema (default: latest)."""
        self.catalog = catalog
        self._reader_versions = dict(reader_versions or {})

    def writer_schema(self, event_type: str) -> EventSchema:
        try:
            return self.catalog.latest(event_type)
        except KeyError as error:
            raise EventValidationError(str(error)) from None

    def reader_schema(self, event_type: str) -> EventSchema:
        pinned = self._reader_versions.get(event_type)
        versions = self.catalog.versions(event_type)
        if pinned is None:
            return versions[-1]
        return next(s for s in versions if s.version == pinned)

    def encode(self, event_type: str, payload: Mapping[str, Any]) -> tuple[bytes, EventSchema]:
        schema = self.writer_schema(event_type)
        try:
            validate(dict(payload), schema.parsed, raise_errors=True)
        except Exception as error:  # fastavro's ValidationError carries the field path
            raise EventValidationError(f"{event_type} payload invalid: {error}") from None
        buffer = io.BytesIO()
        schemaless_writer(buffer, schema.parsed, dict(payload))
        return buffer.getvalue(), schema

    def decode(self, event_type: str, schema_reference: str, data: bytes) -> dict[str, Any]:
        writer = self.catalog.by_fingerprint(fingerprint_of_reference(schema_reference))
        if writer is None:
            raise PoisonMessage(f"unknown writer schema {schema_reference!r} for {event_type}")
        if writer.event_type != event_type:
            raise PoisonMessage(
                f"header says {event_type} but schema {schema_reference!r} is {writer.event_type}"
            )
        try:
            reader = self.reader_schema(event_type)
            record = schemaless_reader(io.BytesIO(data), writer.parsed, reader.parsed)
        except Exception as error:  # truncated or corrupt bytes surface as many error types
            raise PoisonMessage(f"cannot decode {event_type}: {error!r}") from None
        if not isinstance(record, dict):
            raise PoisonMessage(f"{event_type} decoded to {type(record).__name__}, not a record")
        return record
