"""Load the schema files and index them by event type, version and fingerprint.

The fingerprint (Avro's CRC-64-AVRO "Rabin" fingerprint of the parsing canonical form)
travels with every event in its ``ce_dataschema`` header, so a consumer always knows
the exact writer schema and can resolve it into its own reader schema, whatever
version either side runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent
SCHEMA_URI_PREFIX = "urn:choreo:schema:"
"""CloudEvents wants ``dataschema`` to be an absolute URI; a URN names the schema without
claiming a host that serves it."""
FILE_NAME = re.compile(r"^(?P<event_type>[A-Z]\w*)\.v(?P<version>[1-9]\d*)\.avsc$")


class SchemaFileError(ValueError):
    """A schema file that cannot be used: bad name, bad JSON, or not valid Avro."""


@dataclass(frozen=True)
class EventSchema:
    aggregate: str
    event_type: str
    version: int
    path: Path
    definition: dict[str, Any] = field(repr=False, compare=False)

    @cached_property
    def parsed(self) -> dict[str, Any]:
        return fastavro.parse_schema(self.definition, _write_hint=False)

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(to_parsing_canonical_form(self.parsed), "CRC-64-AVRO")

    @property
    def topic(self) -> str:
        return f"{self.aggregate}.events"

    @property
    def reference(self) -> str:
        """What goes into the ``ce_dataschema`` header: an absolute URI, readable and exact
        (``urn:choreo:schema:OrderPlaced.v1#<fingerprint>``)."""
        return f"{SCHEMA_URI_PREFIX}{self.event_type}.v{self.version}#{self.fingerprint}"


def load_schema_file(path: Path, aggregate: str) -> EventSchema:
    match = FILE_NAME.match(path.name)
    if match is None:
        raise SchemaFileError(f"{path}: expected a name like OrderPlaced.v1.avsc")
    try:
        definition = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SchemaFileError(f"{path}: not valid JSON: {error}") from None
    schema = EventSchema(aggregate, match["event_type"], int(match["version"]), path, definition)
    try:
        schema.parsed  # noqa: B018 - parse now so a bad schema fails at load, not at first use
    except Exception as error:  # fastavro raises several unrelated types for bad schemas
        raise SchemaFileError(f"{path}: not a valid Avro schema: {error}") from None
    return schema


class SchemaCatalog:
    """Every schema version of every event type found under one folder."""

    def __init__(self, schemas: list[EventSchema]) -> None:
        self._by_type: dict[str, list[EventSchema]] = {}
        self._by_fingerprint: dict[str, EventSchema] = {}
        for schema in sorted(schemas, key=lambda s: (s.event_type, s.version)):
            self._by_type.setdefault(schema.event_type, []).append(schema)
            self._by_fingerprint[schema.fingerprint] = schema

    @classmethod
    def load(cls, root: Path = SCHEMA_DIR) -> SchemaCatalog:
        return cls([
            load_schema_file(path, path.parent.name) for path in sorted(root.glob("*/*.avsc"))
        ])

    def event_types(self) -> list[str]:
        return sorted(self._by_type)

    def versions(self, event_type: str) -> list[EventSchema]:
        try:
            return list(self._by_type[event_type])
        except KeyError:
            raise KeyError(f"no schema for event type {event_type!r}") from None

    def latest(self, event_type: str) -> EventSchema:
        return self.versions(event_type)[-1]

    def by_fingerprint(self, value: str) -> EventSchema | None:
        return self._by_fingerprint.get(value)


def fingerprint_of_reference(reference: str) -> str:
    """``urn:choreo:schema:OrderPlaced.v1#abc123`` -> ``abc123``; the part before '#' is
    for humans (records written before the URN carried ``OrderPlaced.v1#abc123``)."""
    return reference.rsplit("#", 1)[-1]
