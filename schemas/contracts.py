"""The contract between the code and the schema folder: who reads and who writes each event.

``choreo schemas check`` compares the versions of an event type with each other under a
policy. That leaves two gaps this module closes:

- A consumer reads with the one version its ``EventCodec`` picks (the latest, or an older
  one pinned in ``reader_versions``), and it meets every version ever written, because
  events outlive producer releases in their topic. :func:`check_consumers` runs the avro
  checker on exactly those pairs and names the consumer in each finding, whatever the
  policy file says.
- A schema nobody emits is dead weight that still constrains every future change, and an
  emitted type without a schema fails at run time. :func:`producer_problems` checks what
  the services declare they emit (``ServiceDefinition.emits``, which their writers
  enforce), so the check needs neither a database nor a broker, nor a reading of their
  source.

The inputs are plain data (consumer names, event types, versions, declarations), so
the module depends on neither the services nor the outbox runtime; whoever wires the
services in (a test, the CLI) supplies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from choreo.schemas.compatibility import ReadFailure, read_failure
from choreo.schemas.parsing import ParsedSchema, ParsedTree


@dataclass(frozen=True)
class Subscription:
    """One consumer handling one event type, and the schema version it reads it with."""

    consumer: str
    event_type: str
    reader_version: int | None = None
    """None: the latest version, which an ``EventCodec`` without a pin reads with."""


@dataclass(frozen=True)
class ContractBreak:
    """Data one writer version produced that a consumer's reader schema cannot read."""

    consumer: str
    event_type: str
    reader_version: int
    writer_version: int
    failure: ReadFailure

    def __str__(self) -> str:
        return (f"consumer {self.consumer} reads {self.event_type} with v{self.reader_version}, "
                f"which cannot read data written with v{self.writer_version}: {self.failure}")


@dataclass(frozen=True)
class ConsumerContracts:
    pairs: int
    """Reader/writer pairs checked: a vacuous check (no subscriptions) shows up as 0."""
    breaks: tuple[ContractBreak, ...]
    problems: tuple[str, ...]
    """Subscriptions that cannot be checked: no schema, or a pin to a version with no file."""


def check_consumers(tree: ParsedTree, subscriptions: Iterable[Subscription]) -> ConsumerContracts:
    """Each subscription's reader schema against every version of its type, as writer."""
    by_type: dict[str, dict[int, ParsedSchema]] = {}
    for schema in tree.schemas:
        by_type.setdefault(schema.event.event_type, {})[schema.event.version] = schema
    pairs = 0
    breaks: list[ContractBreak] = []
    problems: list[str] = []
    for subscription in subscriptions:
        consumer, event_type = subscription.consumer, subscription.event_type
        versions = by_type.get(event_type)
        if not versions:
            problems.append(f"consumer {consumer} handles {event_type}, which has no schema")
            continue
        reader_version = subscription.reader_version
        if reader_version is None:
            reader_version = max(versions)
        reader = versions.get(reader_version)
        if reader is None:
            problems.append(f"consumer {consumer} reads {event_type} with v{reader_version}, "
                            f"which has no schema file")
            continue
        for writer_version, writer in sorted(versions.items()):
            pairs += 1
            failure = read_failure(reader, writer)
            if failure is not None:
                breaks.append(ContractBreak(consumer, event_type, reader_version,
                                            writer_version, failure))
    return ConsumerContracts(pairs, tuple(breaks), tuple(problems))


@dataclass(frozen=True)
class Declaration:
    """What one service says it emits (``ServiceDefinition.emits``)."""

    service: str
    emits: frozenset[str]


def producer_problems(tree: ParsedTree, declarations: Iterable[Declaration]) -> list[str]:
    """Schemas nobody declares to emit, and declared emits without a schema."""
    with_schema = {schema.event.event_type for schema in tree.schemas}
    emitted: dict[str, list[str]] = {}
    for declaration in declarations:
        for event_type in declaration.emits:
            emitted.setdefault(event_type, []).append(declaration.service)
    return [
        *(f"{event_type} has a schema, but no service declares it emits it"
          for event_type in sorted(with_schema - set(emitted))),
        *(f"{service} declares it emits {event_type}, which has no schema"
          for event_type in sorted(set(emitted) - with_schema)
          for service in sorted(emitted[event_type])),
    ]
