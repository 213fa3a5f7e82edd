"""Consumer and producer contracts, read off the services' declarations (``cli.contracts``):
no servers needed.

What a service emits is what its ``ServiceDefinition.emits`` declares; its writer refuses
anything else (tests/outbox/test_declared_emits.py), so sweepers and rare branches are
covered without driving them.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
from pathlib import Path

import pytest

from choreo import services
from choreo.cli.contracts import (
    cmd_contracts,
    consumer_contracts,
    declarations,
    definitions,
    subscriptions,
)
from choreo.schemas.catalog import SCHEMA_DIR, SchemaCatalog
from choreo.schemas.contracts import Declaration, Subscription, check_consumers, producer_problems
from choreo.schemas.parsing import parse_tree
from choreo.stack import manifest

SERVICES_ROOT = Path(services.__file__).resolve().parent


def starts_consumer_runner(entry_point: Path) -> bool:
    """Whether a ``__main__.py`` hands over to the library's ``run_service``, i.e. is a
    consumer."""
    tree = ast.parse(entry_point.read_text())
    runners = {alias.asname or alias.name for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module == "choreo.outbox"
               for alias in node.names if alias.name == "run_service"}
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
               and node.func.id in runners for node in ast.walk(tree))


def test_every_consumer_service_is_checked() -> None:
    """A consumer missing its manifest ``definition`` would escape the check."""
    consumers = {entry.parent.name for entry in SERVICES_ROOT.glob("*/__main__.py")
                 if starts_consumer_runner(entry)}

    checked = {p.module.rpartition(".")[2] for p in manifest.MANIFEST if p.definition}
    assert consumers <= checked, (
        "each service whose entry point calls run_service needs a manifest definition")


def test_consumers_read_every_writer_version() -> None:
    subscribed = subscriptions(SchemaCatalog.load())
    contracts = check_consumers(parse_tree(SCHEMA_DIR), subscribed)

    assert not contracts.problems, "\n".join(contracts.problems)
    assert not contracts.breaks, "\n".join(map(str, contracts.breaks))
    assert {s.consumer for s in subscribed} == {
        d.name for d in definitions() if d.build_handlers(None)}  # type: ignore[arg-type]
    assert contracts.pairs >= len(subscribed) > 0


def test_every_schema_is_declared_and_every_declared_emit_has_a_schema() -> None:
    problems = producer_problems(parse_tree(SCHEMA_DIR), declarations())

    assert not problems, "\n".join(problems)


def test_undeclared_schemas_and_schema_less_declarations_are_reported() -> None:
    problems = producer_problems(parse_tree(SCHEMA_DIR), [
        Declaration("orders", frozenset({"OrderPlaced", "OrderConfirmed", "OrderCancelled",
                                         "OrderRejected"})),
        Declaration("shipping", frozenset({"ParcelShipped"})),
    ])

    assert "StockReserved has a schema, but no service declares it emits it" in problems
    assert "shipping declares it emits ParcelShipped, which has no schema" in problems
    assert not any(p.startswith("Order") for p in problems)


def test_the_command_lists_the_declarations_and_fails_on_a_schema_nobody_emits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    parcel = {"type": "record", "name": "ParcelShipped", "namespace": "choreo.shipping",
              "fields": [{"name": "parcel_id", "type": "string"}]}
    (root / "shipping").mkdir()
    (root / "shipping" / "ParcelShipped.v1.avsc").write_text(json.dumps(parcel))

    status = cmd_contracts(argparse.Namespace(root=str(root)), None)

    out = capsys.readouterr().out
    assert status == 1
    assert "payments   emits PaymentCaptured, PaymentDeclined, PaymentRefunded" in out
    assert "error: ParcelShipped has a schema, but no service declares it emits it" in out


def test_an_incompatible_version_breaks_the_contract(tmp_path: Path) -> None:
    """OrderPlaced v3 turns ``items[].quantity`` from int into string: the consumers of
    OrderPlaced read with v3 and cannot read what v1 and v2 producers wrote."""
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    definition = json.loads((root / "order" / "OrderPlaced.v2.avsc").read_text())
    items = next(f for f in definition["fields"] if f["name"] == "items")
    quantity = next(f for f in items["type"]["items"]["fields"] if f["name"] == "quantity")
    quantity["type"] = "string"
    (root / "order" / "OrderPlaced.v3.avsc").write_text(json.dumps(definition))

    contracts = consumer_contracts(root)

    assert not contracts.problems
    assert {(b.consumer, b.event_type, b.reader_version, b.writer_version)
            for b in contracts.breaks} == {(consumer, "OrderPlaced", 3, writer)
                                           for consumer in ("inventory", "payments", "wallet",
                                                            "notification")
                                           for writer in (1, 2)}
    message = str(next(b for b in contracts.breaks if b.consumer == "payments"))
    assert message.startswith("consumer payments reads OrderPlaced with v3, which cannot read "
                              "data written with v1: type_mismatch at ")
    assert "(field items[].quantity)" in message
    assert "reader type: string not compatible with writer type: int" in message

    # A consumer pinned to v1 breaks the other way: it meets v3 data from upgraded producers.
    pinned = check_consumers(parse_tree(root), [Subscription("payments", "OrderPlaced", 1)])
    assert [(b.reader_version, b.writer_version) for b in pinned.breaks] == [(1, 3)]


def test_missing_schemas_and_pins_are_reported() -> None:
    contracts = check_consumers(parse_tree(SCHEMA_DIR), [
        Subscription("shipping", "ParcelShipped"),
        Subscription("payments", "OrderPlaced", reader_version=3),
    ])

    assert contracts.problems == (
        "consumer shipping handles ParcelShipped, which has no schema",
        "consumer payments reads OrderPlaced with v3, which has no schema file",
    )
    assert contracts.pairs == 0
