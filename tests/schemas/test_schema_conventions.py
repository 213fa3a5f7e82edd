"""Every schema parses, is named after its file and folder, is numbered 1..N and documented."""

from __future__ import annotations

from typing import Any

import pytest
from schema_tree import FIXTURES, V1, V2, SchemaTree, fixture_definition


def errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error: ")]


def v1_with(**changes: Any) -> dict[str, Any]:
    return {**fixture_definition("ParcelShipped.v1.avsc"), **changes}


def test_the_fixture_itself_follows_every_convention(tree: SchemaTree) -> None:
    code, out = tree.parcel().check()

    assert code == 0, out
    assert "ok    ParcelShipped: v1 under FULL_TRANSITIVE, no earlier version" in out


@pytest.mark.parametrize(("text", "expected"), [
    ("{not json", "error: shipping/ParcelShipped.v2.avsc: not valid JSON: Expecting property "
                  "name enclosed in double quotes: line 1 column 2 (char 1)"),
    ('{"type": "record", "name": "ParcelShipped", "fields": [{"name": "a", "type": "strin"}]}',
     "error: shipping/ParcelShipped.v2.avsc: not a valid Avro schema: strin"),
])
def test_a_file_that_does_not_parse_is_named_and_the_others_still_checked(
    tree: SchemaTree, text: str, expected: str
) -> None:
    tree.parcel()
    (tree.root / V2).write_text(text)

    code, out = tree.check()

    assert code == 1
    assert errors(out) == [expected]
    assert "ok    ParcelShipped: v1 under FULL_TRANSITIVE" in out


def test_fastavro_rejects_a_default_of_the_wrong_type(tree: SchemaTree) -> None:
    v1 = fixture_definition("ParcelShipped.v1.avsc")
    v1["fields"][3]["default"] = 5  # carrier is a string
    tree.add(V1, v1)

    code, out = tree.check()

    assert code == 1
    assert errors(out) == ["error: shipping/ParcelShipped.v1.avsc: not a valid Avro schema: "
                           "Default value <5> must match schema type: string"]


def test_the_avro_package_rejects_an_invalid_name(tree: SchemaTree) -> None:
    tree.add(V1, v1_with(name="Parcel-Shipped"))

    code, out = tree.check()

    assert code == 1
    assert errors(out) == [
        "error: shipping/ParcelShipped.v1.avsc: the avro package rejects it: Parcel-Shipped is "
        "not a valid Avro name because it does not match the pattern "
        "(?:^|\\.)[A-Za-z_][A-Za-z0-9_]*$"
    ]


def test_a_file_name_not_like_the_catalogs_is_reported(tree: SchemaTree) -> None:
    tree.parcel().add("shipping/ParcelShipped.avsc", FIXTURES / "ParcelShipped.v1.avsc")

    code, out = tree.check()

    assert code == 1
    assert errors(out) == ["error: shipping/ParcelShipped.avsc: expected a name like "
                           "OrderPlaced.v1.avsc"]


@pytest.mark.parametrize(("changes", "found"), [
    ({"name": "ParcelSent"}, "choreo.shipping.ParcelSent"),
    ({"namespace": "choreo.shipments"}, "choreo.shipments.ParcelShipped"),
    ({"name": "choreo.order.ParcelShipped"}, "choreo.order.ParcelShipped"),
])
def test_record_name_and_namespace_come_from_file_and_folder(
    tree: SchemaTree, changes: dict[str, str], found: str
) -> None:
    tree.add(V1, v1_with(**changes))

    code, out = tree.check()

    assert code == 1
    assert errors(out) == [f"error: shipping/ParcelShipped.v1.avsc: record is {found}, expected "
                           "choreo.shipping.ParcelShipped (name from the file, namespace from "
                           "the folder)"]


def test_top_level_must_be_a_record(tree: SchemaTree) -> None:
    (tree.root / "shipping").mkdir()
    (tree.root / V1).write_text('"string"')

    code, out = tree.check()

    assert code == 1
    assert errors(out) == ["error: shipping/ParcelShipped.v1.avsc: top-level type must be a "
                           "record, not string"]


def test_versions_must_be_contiguous_from_one(tree: SchemaTree) -> None:
    tree.parcel().add("shipping/ParcelShipped.v3.avsc", FIXTURES / "v2" / "optional_field.avsc")

    code, out = tree.check()

    assert code == 1
    assert errors(out) == ["error: ParcelShipped: versions must be 1..2 without gaps, found 1, 3"]


def test_a_version_that_fails_to_parse_does_not_look_missing(tree: SchemaTree) -> None:
    tree.parcel("optional_field")
    (tree.root / V1).write_text("{not json")

    code, out = tree.check()

    assert code == 1
    [only] = errors(out)
    assert only.startswith("error: shipping/ParcelShipped.v1.avsc: not valid JSON")


def test_an_event_type_lives_in_one_aggregate_folder(tree: SchemaTree) -> None:
    tree.parcel().add("order/ParcelShipped.v2.avsc", v1_with(namespace="choreo.order"))

    code, out = tree.check()

    assert code == 1
    assert "error: ParcelShipped: defined in several aggregate folders: order, shipping" in out


def test_every_record_and_field_has_a_doc_nested_ones_included(tree: SchemaTree) -> None:
    v1 = fixture_definition("ParcelShipped.v1.avsc")
    del v1["doc"]
    v1["fields"][0]["doc"] = "   "
    v1["fields"].append({"name": "lines", "doc": "What is in the parcel.", "type": {
        "type": "array", "items": {"type": "record", "name": "ParcelLine", "fields": [
            {"name": "sku", "type": "string"}]}}})
    tree.add(V1, v1)

    code, out = tree.check()

    assert code == 1
    assert errors(out) == [
        "error: shipping/ParcelShipped.v1.avsc: record choreo.shipping.ParcelShipped has no doc",
        "error: shipping/ParcelShipped.v1.avsc: field choreo.shipping.ParcelShipped.parcel_id "
        "has no doc",
        "error: shipping/ParcelShipped.v1.avsc: record choreo.shipping.ParcelLine has no doc",
        "error: shipping/ParcelShipped.v1.avsc: field choreo.shipping.ParcelLine.sku has no doc",
    ]


def test_an_empty_root_fails_rather_than_passing_vacuously(tree: SchemaTree) -> None:
    code, out = tree.check()

    assert code == 1
    assert errors(out) == [f"error: no schema files matching */*.avsc under {tree.root}"]


def test_a_root_that_is_not_a_directory_cannot_be_checked(tree: SchemaTree) -> None:
    code, out = SchemaTree(tree.root / "missing").check()

    assert code == 2
    assert out == f"schemas check: {tree.root / 'missing'} is not a directory\n"
