"""The schema folder against the services' declarations: who reads and who writes each event.

``schemas.contracts`` knows neither the services nor the runtime, so whoever wires the
services in supplies them: this module, from the stack's manifest. Each entry with a
``definition`` names its ``ServiceDefinition``; what it emits is what that definition
declares (and its writer enforces), what it consumes are the keys of the handlers its
runtime builds (through ``outbox.runner.build_runtime``, with stand-ins that open no
connection), and the reader schema comes from that runtime's own codec. A new participant,
a new handler or a pinned reader version is checked without anyone updating a list here.
``choreo schemas check`` runs these after the version checks; the tests in
tests/contracts/ run them on broken copies.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from choreo.outbox.codec import EventCodec
from choreo.outbox.kafka_connection import KafkaConnection
from choreo.outbox.retry import Backoff
from choreo.outbox.runner import ServiceDefinition, build_runtime
from choreo.outbox.settings import ServiceSettings
from choreo.schemas.catalog import SCHEMA_DIR, SchemaCatalog
from choreo.schemas.contracts import (
    ConsumerContracts,
    Declaration,
    Subscription,
    check_consumers,
    producer_problems,
)
from choreo.schemas.parsing import parse_tree
from choreo.stack import manifest


def definitions() -> list[ServiceDefinition]:
    """Every manifest entry's definition, imported from its ``module:attribute``."""
    return [manifest.definition(p) for p in manifest.MANIFEST if p.definition is not None]


def stand_in_settings(service: str) -> ServiceSettings:
    """Settings that build a runtime without connecting: connections open on first use."""
    return ServiceSettings(service=service, database_url="postgresql://unused.invalid/none",
                           kafka=KafkaConnection("unused.invalid:9092"), redis_url="",
                           metrics_port=0, backoff=Backoff())


def reader_version(codec: EventCodec, event_type: str) -> int | None:
    """The version the codec decodes with; None if the catalog lacks the type (reported)."""
    try:
        return codec.reader_schema(event_type).version
    except KeyError:
        return None


def subscriptions(catalog: SchemaCatalog) -> list[Subscription]:
    """Every consumer's handled event types, with the reader version of its runtime's codec."""
    found: list[Subscription] = []
    for definition in definitions():
        # Undeclared or schema-less emits are reported by producer_problems, not here.
        runtime, _ = build_runtime(replace(definition, emits=()),
                                   stand_in_settings(definition.name), catalog)
        found.extend(Subscription(definition.name, event_type,
                                  reader_version(runtime.codec, event_type))
                     for event_type in sorted(runtime.handlers))
    return found


def declarations() -> list[Declaration]:
    return [Declaration(d.name, frozenset(d.emits)) for d in definitions()]


def consumer_contracts(root: Path) -> ConsumerContracts:
    """The contract check the way the services would run on the schema folder ``root``."""
    return check_consumers(parse_tree(root), subscriptions(SchemaCatalog.load(root)))


def cmd_contracts(args: argparse.Namespace, settings: object) -> int:
    """``choreo schemas contracts``: only the contracts, with every pair they checked."""
    root = Path(args.root).resolve() if args.root else SCHEMA_DIR
    summary, problems = contract_problems(root)
    for declaration in declarations():
        print(f"{declaration.service:<10} emits {', '.join(sorted(declaration.emits))}")
    for subscription in subscriptions(SchemaCatalog.load(root)):
        reader = subscription.reader_version
        print(f"{subscription.consumer:<10} reads {subscription.event_type:<24}"
              f" with {'v' + str(reader) if reader is not None else 'no schema'}")
    print(summary)
    for problem in problems:
        print(f"error: {problem}")
    print(f"contracts {'FAILED' if problems else 'hold'}: {len(problems)} problems")
    return 1 if problems else 0


def contract_problems(root: Path) -> tuple[str, list[str]]:
    """A one-line summary and every broken contract, for ``schemas.check``."""
    contracts = consumer_contracts(root)
    declared = declarations()
    problems = [*contracts.problems, *map(str, contracts.breaks),
                *producer_problems(parse_tree(root), declared)]
    return (f"contracts: {contracts.pairs} reader/writer pairs of {len(declared)} services,"
            f" {sum(len(d.emits) for d in declared)} declared emits", problems)
