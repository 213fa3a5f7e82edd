"""Check an event type's versions against each other with the avro package's own checker.

``avro.compatibility.ReaderWriterCompatibilityChecker`` is the port of Java's
``SchemaCompatibility``, the code Schema Registry runs, so this accepts exactly what Avro
schema resolution accepts; hand-written rules would drift from it. Its findings are passed
on as it reports them, with the reader's field path added for humans.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import ArraySchema, MapSchema, RecordSchema, Schema

from choreo.schemas.parsing import ParsedSchema
from choreo.schemas.policy import Policy

ROOT = ReaderWriterCompatibilityChecker.ROOT_REFERENCE_TOKEN


class Direction(StrEnum):
    BACKWARD = "backward"
    """The newer version reads data written with the older one."""
    FORWARD = "forward"
    """The older version reads data written with the newer one."""


@dataclass(frozen=True)
class ReadFailure:
    """Why a reader schema cannot read what a writer schema wrote, as the checker says."""

    kinds: tuple[str, ...]
    locations: tuple[str, ...]
    messages: tuple[str, ...]

    def __str__(self) -> str:
        return (f"{', '.join(self.kinds)} at {', '.join(self.locations)}: "
                f"{'; '.join(self.messages)}")


def read_failure(reader: ParsedSchema, writer: ParsedSchema) -> ReadFailure | None:
    """None if ``reader`` reads everything ``writer`` writes."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader.avro, writer.avro)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return None
    # The checker keeps kinds, messages and locations as separate collections, so they
    # cannot be paired up when there are several; each is reported in full, sorted.
    # Merging a compatible sub-result adds its placeholder location "/" to a failed one,
    # so "/" is dropped when a real location is present.
    locations = sorted(result.locations - {ROOT}) or [ROOT]
    return ReadFailure(
        kinds=tuple(dict.fromkeys(kind.value for kind in result.incompatibilities)),
        locations=tuple(_with_field_path(reader.avro, location) for location in locations),
        messages=tuple(sorted(result.messages)),
    )


@dataclass(frozen=True)
class Incompatibility:
    event_type: str
    reader_version: int
    writer_version: int
    direction: Direction
    policy: Policy
    failure: ReadFailure

    def __str__(self) -> str:
        return (f"{self.event_type}: v{self.reader_version} as reader cannot read data written "
                f"with v{self.writer_version} ({self.direction}, {self.policy}): {self.failure}")


@dataclass(frozen=True)
class EventTypeResult:
    event_type: str
    versions: tuple[int, ...]
    policy: Policy
    checks: int
    incompatibilities: tuple[Incompatibility, ...]


def check_event_type(versions: Sequence[ParsedSchema], policy: Policy) -> EventTypeResult:
    """Check each version against the earlier ones the policy names, in both its directions."""
    ordered = sorted(versions, key=lambda schema: schema.event.version)
    checks = 0
    found: list[Incompatibility] = []
    for newer, older, direction in _pairs(ordered, policy):
        reader, writer = (newer, older) if direction is Direction.BACKWARD else (older, newer)
        checks += 1
        failure = read_failure(reader, writer)
        if failure is not None:
            found.append(Incompatibility(reader.event.event_type, reader.event.version,
                                         writer.event.version, direction, policy, failure))
    return EventTypeResult(
        event_type=ordered[0].event.event_type,
        versions=tuple(schema.event.version for schema in ordered),
        policy=policy,
        checks=checks,
        incompatibilities=tuple(found),
    )


def _pairs(
    ordered: Sequence[ParsedSchema], policy: Policy
) -> Iterator[tuple[ParsedSchema, ParsedSchema, Direction]]:
    for index, newer in enumerate(ordered):
        earlier = ordered[:index] if policy.transitive else ordered[max(index - 1, 0):index]
        for older in earlier:
            if policy.backward:
                yield newer, older, Direction.BACKWARD
            if policy.forward:
                yield newer, older, Direction.FORWARD


def _with_field_path(reader: Schema, location: str) -> str:
    """``/fields/2/type/items/fields/1`` -> ``... (field items[].quantity)`` in the reader."""
    path = ""
    schema = reader
    tokens = iter(location.strip("/").split("/"))
    for token in tokens:
        if token == "fields" and isinstance(schema, RecordSchema):
            field = schema.fields[int(next(tokens))]
            path = f"{path}.{field.name}" if path else field.name
            schema = field.type
        elif token == "items" and isinstance(schema, ArraySchema):
            path, schema = f"{path}[]", schema.items
        elif token == "values" and isinstance(schema, MapSchema):
            path, schema = f"{path}{{}}", schema.values
        elif token != "type":
            break  # "name", "symbols", "size" or a union branch: a property, not a field
    return f"{location} (field {path})" if path else location
