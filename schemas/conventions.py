"""House rules the Avro checker does not cover: names, namespaces, version numbers, docs.

The catalog takes the event type from the file name and the topic from the folder, while
the fingerprint on the wire covers the record's full name; a record named differently from
its file would be published under one identity and looked up under another. Versions are
numbered 1..N so "all earlier versions" is unambiguous, and docs are required because the
schema is the only contract between services owned by different teams.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from avro.schema import ArraySchema, MapSchema, RecordSchema, Schema, UnionSchema

from choreo.schemas.catalog import FILE_NAME
from choreo.schemas.parsing import SCHEMA_GLOB, ParsedSchema


def convention_problems(schemas: list[ParsedSchema]) -> list[str]:
    problems: list[str] = []
    for schema in schemas:
        if not isinstance(schema.avro, RecordSchema):
            problems.append(f"{schema.file}: top-level type must be a record, "
                            f"not {schema.avro.type}")
            continue
        expected = f"choreo.{schema.event.aggregate}.{schema.event.event_type}"
        if schema.avro.fullname != expected:
            problems.append(f"{schema.file}: record is {schema.avro.fullname}, expected "
                            f"{expected} (name from the file, namespace from the folder)")
        problems.extend(f"{schema.file}: {what} has no doc" for what in _undocumented(schema.avro))
    return problems


def version_problems(root: Path) -> list[str]:
    """Versions from file names, so a version that fails to parse does not look missing."""
    versions: dict[str, list[int]] = defaultdict(list)
    folders: dict[str, set[str]] = defaultdict(set)
    for path in root.glob(SCHEMA_GLOB):
        match = FILE_NAME.match(path.name)
        if match:  # a bad name is reported when the file is parsed
            versions[match["event_type"]].append(int(match["version"]))
            folders[match["event_type"]].add(path.parent.name)
    problems: list[str] = []
    for event_type in sorted(versions):
        if len(folders[event_type]) > 1:
            problems.append(f"{event_type}: defined in several aggregate folders: "
                            f"{', '.join(sorted(folders[event_type]))}")
        found = sorted(versions[event_type])
        if found != list(range(1, len(found) + 1)):
            problems.append(f"{event_type}: versions must be 1..{len(found)} without gaps, "
                            f"found {', '.join(map(str, found))}")
    return problems


def _undocumented(schema: Schema, seen: set[str] | None = None) -> Iterator[str]:
    """Every record and field without a non-blank doc, nested ones included."""
    seen = set() if seen is None else seen
    if isinstance(schema, RecordSchema):
        if schema.fullname in seen:  # a named type used twice, or a recursive one
            return
        seen.add(schema.fullname)
        if not _has_doc(schema.doc):
            yield f"record {schema.fullname}"
        for field in schema.fields:
            if not _has_doc(field.doc):
                yield f"field {schema.fullname}.{field.name}"
            yield from _undocumented(field.type, seen)
    elif isinstance(schema, ArraySchema):
        yield from _undocumented(schema.items, seen)
    elif isinstance(schema, MapSchema):
        yield from _undocumented(schema.values, seen)
    elif isinstance(schema, UnionSchema):
        for branch in schema.schemas:
            yield from _undocumented(branch, seen)


def _has_doc(doc: object) -> bool:
    return isinstance(doc, str) and bool(doc.strip())
