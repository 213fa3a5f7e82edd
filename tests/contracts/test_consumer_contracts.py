"""Consumer and producer contracts, read off the services' own wiring (``cli.contracts``):
no servers needed.

The emit scan (``schemas.contracts.scan_emits``) covers sweepers and rare branches that
driving handlers would need a database and scripted state to reach.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from choreo.cli.contracts import (
    CONSUMERS,
    SERVICES_ROOT,
    consumer_contracts,
    subscriptions,
)
from choreo.schemas.catalog import SCHEMA_DIR, SchemaCatalog
from choreo.schemas.contracts import Subscription, check_consumers, producer_problems, scan_emits
from choreo.schemas.parsing import parse_tree


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
    consumers = {entry.parent.name for entry in SERVICES_ROOT.glob("*/__main__.py")
                 if starts_consumer_runner(entry)}

    assert consumers == set(CONSUMERS), (
        "CONSUMERS must list exactly the services whose entry point calls run_service")


def test_consumers_read_every_writer_version() -> None:
    subscribed = subscriptions(SchemaCatalog.load())
    contracts = check_consumers(parse_tree(SCHEMA_DIR), subscribed)

    assert not contracts.problems, "\n".join(contracts.problems)
    assert not contracts.breaks, "\n".join(map(str, contracts.breaks))
    assert {s.consumer for s in subscribed} == {d().name for d in CONSUMERS.values()}
    assert contracts.pairs >= len(subscribed) > 0


def test_every_schema_is_emitted_and_every_emit_has_a_schema() -> None:
    scan = scan_emits(SERVICES_ROOT)

    problems = producer_problems(parse_tree(SCHEMA_DIR), scan)

    assert not problems, "\n".join(problems)


def test_an_incompatible_version_breaks_the_contract(tmp_path: Path) -> None:
    """OrderPlaced v2 turns ``items[].quantity`` from int into string: the consumers of
    OrderPlaced read with v2 and cannot read what v1 producers wrote."""
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    definition = json.loads((root / "order" / "OrderPlaced.v1.avsc").read_text())
    items = next(f for f in definition["fields"] if f["name"] == "items")
    quantity = next(f for f in items["type"]["items"]["fields"] if f["name"] == "quantity")
    quantity["type"] = "string"
    (root / "order" / "OrderPlaced.v2.avsc").write_text(json.dumps(definition))

    contracts = consumer_contracts(root)

    assert not contracts.problems
    assert {(b.consumer, b.event_type, b.reader_version, b.writer_version)
            for b in contracts.breaks} == {("inventory", "OrderPlaced", 2, 1),
                                           ("payments", "OrderPlaced", 2, 1)}
    message = str(next(b for b in contracts.breaks if b.consumer == "payments"))
    assert message.startswith("consumer payments reads OrderPlaced with v2, which cannot read "
                              "data written with v1: type_mismatch at ")
    assert "(field items[].quantity)" in message
    assert "reader type: string not compatible with writer type: int" in message

    # A consumer pinned to v1 breaks the other way: it meets v2 data from upgraded producers.
    pinned = check_consumers(parse_tree(root), [Subscription("payments", "OrderPlaced", 1)])
    assert [(b.reader_version, b.writer_version) for b in pinned.breaks] == [(1, 2)]


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


def test_the_emit_scan_follows_the_type_or_fails_closed(tmp_path: Path) -> None:
    root = tmp_path / "services"
    (root / "shipping").mkdir(parents=True)
    (root / "shipping" / "handlers.py").write_text(
        "def record(conn, writer, kind, payload):\n"
        "    writer.emit(conn, kind, 'p-1', payload)\n"
        "\n"
        "def shipped(conn, writer):\n"
        "    record(conn, writer, 'ParcelShipped', {})\n"
        "\n"
        "def settled(conn, writer, paid):\n"
        "    kind = 'OrderPlaced' if paid else 'OrderRejected'\n"
        "    writer.emit(conn, kind, 'o-1', {})\n"
        "\n"
        "def guessed(conn, writer, kinds):\n"
        "    writer.emit(conn, kinds[0], 'o-1', {})\n"
    )

    scan = scan_emits(root)
    problems = producer_problems(parse_tree(SCHEMA_DIR), scan)

    file = "services/shipping/handlers.py"
    assert [(s.file, s.line, s.service, s.event_type) for s in scan.sites] == [
        (file, 5, "shipping", "ParcelShipped"), (file, 8, "shipping", "OrderPlaced"),
        (file, 8, "shipping", "OrderRejected"), (file, 12, "shipping", None)]
    assert "OrderConfirmed has a schema, but no service emits it" in problems
    assert f"{file}:5: shipping emits ParcelShipped, which has no schema" in problems
    assert any(p.startswith(f"{file}:12: cannot tell which event type") for p in problems)
    assert not any(p.startswith(("OrderPlaced ", "OrderRejected ")) for p in problems)


@pytest.mark.parametrize("event_type", ["OrderConfirmed", "OrderRejected", "OrderCancelled"])
def test_the_scan_follows_the_orders_transitions(event_type: str) -> None:
    """The order service emits through ``Transition`` values built by its outcome
    functions; the scan must see through them, or these types would look unproduced."""
    sites = scan_emits(SERVICES_ROOT).produced[event_type]

    assert any(site.file in ("services/orders/handlers.py", "services/orders/domain.py")
               for site in sites)


def test_a_declaration_with_a_type_the_scan_cannot_follow_fails_closed(tmp_path: Path) -> None:
    root = tmp_path / "services"
    (root / "shipping").mkdir(parents=True)
    (root / "shipping" / "handlers.py").write_text(
        "def end(conn, writer, kinds):\n"
        "    done = Transition('SHIPPED', kinds[0], {})\n"
        "    writer.emit(conn, done.event_type, 'p-1', done.payload)\n"
    )

    scan = scan_emits(root)

    assert [(s.line, s.event_type) for s in scan.sites] == [(2, None)]
