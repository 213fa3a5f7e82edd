"""The schema folder against the services' own wiring: who reads and who writes each event.

``schemas.contracts`` knows neither the services nor the runtime, so whoever wires the
services in supplies them: this module. What a consumer subscribes to comes from the
handlers its entry point builds (through ``outbox.runner.build_runtime``, with stand-ins
that open no connection), and the reader schema from that runtime's own codec, so a new
handler or a pinned reader version is checked without anyone updating a list. What the
services emit comes from a static scan of their source. ``choreo schemas check`` runs both
after the version checks; the tests in tests/contracts/ run them on broken copies.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from choreo import services
from choreo.outbox.codec import EventCodec
from choreo.outbox.retry import Backoff
from choreo.outbox.runner import ServiceDefinition, build_runtime
from choreo.outbox.settings import ServiceSettings
from choreo.schemas.catalog import SCHEMA_DIR, SchemaCatalog
from choreo.schemas.contracts import (
    ConsumerContracts,
    Subscription,
    check_consumers,
    producer_problems,
    scan_emits,
)
from choreo.schemas.parsing import parse_tree
from choreo.services.inventory import __main__ as inventory_entry
from choreo.services.inventory.settings import InventorySettings
from choreo.services.orders import __main__ as orders_entry
from choreo.services.payments import __main__ as payments_entry
from choreo.services.payments.settings import PaymentsSettings

SERVICES_ROOT = Path(services.__file__).resolve().parent

CONSUMERS: dict[str, Callable[[], ServiceDefinition]] = {
    "orders": lambda: orders_entry.DEFINITION,
    "inventory": lambda: inventory_entry.definition(InventorySettings()),
    # Port 9 (discard): the client is only constructed, never called.
    "payments": lambda: payments_entry.definition(PaymentsSettings(psp_url="http://127.0.0.1:9")),
}
"""How each consumer's entry point builds its definition, by package under ``services/``.
The one hand-written part; ``test_every_consumer_service_is_checked`` keeps it complete."""


def stand_in_settings(service: str) -> ServiceSettings:
    """Settings that build a runtime without connecting: connections open on first use."""
    return ServiceSettings(service=service, database_url="postgresql://unused.invalid/none",
                           kafka_bootstrap="unused.invalid:9092", redis_url="",
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
    for build_definition in CONSUMERS.values():
        definition = build_definition()
        runtime, _ = build_runtime(definition, stand_in_settings(definition.name), catalog)
        found.extend(Subscription(definition.name, event_type,
                                  reader_version(runtime.codec, event_type))
                     for event_type in sorted(runtime.handlers))
    return found


def consumer_contracts(root: Path) -> ConsumerContracts:
    """The contract check the way the services would run on the schema folder ``root``."""
    return check_consumers(parse_tree(root), subscriptions(SchemaCatalog.load(root)))


def cmd_contracts(args: argparse.Namespace, settings: object) -> int:
    """``choreo schemas contracts``: only the contracts, with every pair they checked."""
    root = Path(args.root).resolve() if args.root else SCHEMA_DIR
    summary, problems = contract_problems(root)
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
    scan = scan_emits(SERVICES_ROOT)
    problems = [*contracts.problems, *map(str, contracts.breaks),
                *producer_problems(parse_tree(root), scan)]
    return (f"contracts: {contracts.pairs} reader/writer pairs of {len(CONSUMERS)} consumers,"
            f" {len(scan.sites)} emit sites", problems)
