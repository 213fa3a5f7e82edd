"""Read every schema file under a root with both Avro implementations the project relies on.

fastavro (through the catalog) encodes and decodes events at run time and the avro package
runs the compatibility checker, so a file must satisfy both: fastavro checks defaults
against their types, avro checks names. Every bad file is reported, naming it, instead of
stopping at the first one as ``SchemaCatalog.load`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import avro.errors
import avro.schema

from choreo.schemas.catalog import EventSchema, SchemaFileError, load_schema_file

SCHEMA_GLOB = "*/*.avsc"
"""The catalog's layout: ``<aggregate>/<EventType>.v<N>.avsc``."""


@dataclass(frozen=True)
class ParsedSchema:
    event: EventSchema
    avro: avro.schema.Schema

    @property
    def file(self) -> str:
        """The path as people read it in output: relative to the schema root."""
        return f"{self.event.aggregate}/{self.event.path.name}"


@dataclass(frozen=True)
class ParsedTree:
    schemas: list[ParsedSchema]
    problems: list[str]


def parse_tree(root: Path) -> ParsedTree:
    schemas: list[ParsedSchema] = []
    problems: list[str] = []
    for path in sorted(root.glob(SCHEMA_GLOB)):
        file = path.relative_to(root).as_posix()
        try:
            event = load_schema_file(path, path.parent.name)
        except SchemaFileError as error:
            problems.append(f"{file}: {str(error).removeprefix(f'{path}: ')}")
            continue
        try:
            schemas.append(ParsedSchema(event, avro.schema.parse(path.read_text())))
        except avro.errors.AvroException as error:
            problems.append(f"{file}: the avro package rejects it: {error}")
    if not schemas and not problems:
        problems.append(f"no schema files matching {SCHEMA_GLOB} under {root}")
    return ParsedTree(schemas, problems)
