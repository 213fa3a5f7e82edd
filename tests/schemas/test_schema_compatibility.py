"""Each version against the earlier ones, with the avro checker's findings passed on exactly."""

from __future__ import annotations

import pytest
from schema_tree import V1, V2, SchemaTree, fixture_definition

BREAK = "error: ParcelShipped: v{reader} as reader cannot read data written with v{writer} "
BACKWARD_BREAK = BREAK.format(reader=2, writer=1) + "(backward, FULL_TRANSITIVE): "
FORWARD_BREAK = BREAK.format(reader=1, writer=2) + "(forward, FULL_TRANSITIVE): "


def errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("change", ["optional_field", "alias_rename"])
def test_fully_compatible_changes_pass_the_default_policy(tree: SchemaTree, change: str) -> None:
    # alias_rename renames a field that has a default: new readers find the old name through
    # the alias, old readers fall back to the default. That is why it passes FULL_TRANSITIVE.
    code, out = tree.parcel(change).check()

    assert code == 0, out
    assert "ok    ParcelShipped: v1, v2 under FULL_TRANSITIVE, 2 checks passed" in out


@pytest.mark.parametrize(("change", "policy"), [
    # A v2 reader widens an int written with v1; a v1 reader cannot narrow a long from v2.
    ("widen_int_to_long", "BACKWARD_TRANSITIVE"),
    # Aliases live in the reader only: v2 finds parcel_id under its new name, but a v1 reader
    # finds no parcel_id in v2 data and has no default to fall back to.
    ("alias_rename_required_field", "BACKWARD"),
    # Dropping a field is fine for a v2 reader, a v1 reader misses it (no default).
    ("removed_field", "BACKWARD"),
    # Adding a required field is fine for a v1 reader, a v2 reader misses it in v1 data.
    ("required_field", "FORWARD"),
])
def test_one_directional_changes_pass_only_their_policy(
    tree: SchemaTree, change: str, policy: str
) -> None:
    code, out = tree.parcel(change).policy(ParcelShipped=policy).check()

    assert code == 0, out
    assert f"ok    ParcelShipped: v1, v2 under {policy}, 1 check passed" in out


@pytest.mark.parametrize(("change", "expected"), [
    ("widen_int_to_long", [
        FORWARD_BREAK + "type_mismatch at /fields/2/type (field weight_grams): "
                        "reader type: int not compatible with writer type: long",
    ]),
    ("alias_rename_required_field", [
        FORWARD_BREAK + "reader_field_missing_default_value at /fields/0 (field parcel_id): "
                        "parcel_id",
    ]),
    ("removed_field", [
        FORWARD_BREAK + "reader_field_missing_default_value at /fields/1 (field order_id): "
                        "order_id",
    ]),
    ("changed_type", [
        BACKWARD_BREAK + "type_mismatch at /fields/2/type (field weight_grams): "
                         "reader type: string not compatible with writer type: int",
        FORWARD_BREAK + "type_mismatch at /fields/2/type (field weight_grams): "
                        "reader type: int not compatible with writer type: string",
    ]),
    ("required_field", [
        BACKWARD_BREAK + "reader_field_missing_default_value at /fields/4 (field insured): "
                         "insured",
    ]),
    ("renamed_without_alias", [
        BACKWARD_BREAK + "reader_field_missing_default_value at /fields/0 "
                         "(field tracking_number): tracking_number",
        FORWARD_BREAK + "reader_field_missing_default_value at /fields/0 (field parcel_id): "
                        "parcel_id",
    ]),
])
def test_breaking_changes_fail_the_default_policy_naming_the_incompatibility(
    tree: SchemaTree, change: str, expected: list[str]
) -> None:
    code, out = tree.parcel(change).check()

    assert code == 1
    assert errors(out) == expected
    assert f"FAIL  ParcelShipped: v1, v2 under FULL_TRANSITIVE, {len(expected)} of 2 checks " \
           "failed" in out
    problems = f"{len(expected)} problem{'s' if len(expected) > 1 else ''}"
    assert out.rstrip().endswith(f"schemas check FAILED: {problems}")


def test_several_findings_in_one_pair_are_all_reported(tree: SchemaTree) -> None:
    v2 = fixture_definition("v2/required_field.avsc")
    v2["fields"][2]["type"] = "string"  # weight_grams
    tree.parcel().add(V2, v2)

    code, out = tree.policy("BACKWARD").check()

    assert code == 1
    assert errors(out) == [
        "error: ParcelShipped: v2 as reader cannot read data written with v1 (backward, "
        "BACKWARD): type_mismatch, reader_field_missing_default_value at /fields/2/type "
        "(field weight_grams), /fields/4 (field insured): insured; "
        "reader type: string not compatible with writer type: int"
    ]


def three_versions_dropping_and_retyping_weight(tree: SchemaTree) -> SchemaTree:
    """v2 drops weight_grams (an int); v3 brings it back as a string with a default. Each
    step is backward compatible with the one before, but v3 cannot read v1's ints."""
    v2 = fixture_definition("ParcelShipped.v1.avsc")
    v2["fields"] = [field for field in v2["fields"] if field["name"] != "weight_grams"]
    v3 = fixture_definition("ParcelShipped.v1.avsc")
    v3["fields"] = [*v2["fields"], {"name": "weight_grams", "type": "string", "default": "",
                                    "doc": "Free text now."}]
    tree.parcel().add(V2, v2)
    tree.add("shipping/ParcelShipped.v3.avsc", v3)
    return tree


def test_non_transitive_policy_checks_only_the_previous_version(tree: SchemaTree) -> None:
    code, out = three_versions_dropping_and_retyping_weight(tree).policy("BACKWARD").check()

    assert code == 0, out
    assert "ok    ParcelShipped: v1, v2, v3 under BACKWARD, 2 checks passed" in out


def test_transitive_policy_checks_every_earlier_version(tree: SchemaTree) -> None:
    three_versions_dropping_and_retyping_weight(tree).policy("BACKWARD_TRANSITIVE")

    code, out = tree.check()

    assert code == 1
    assert errors(out) == [
        "error: ParcelShipped: v3 as reader cannot read data written with v1 (backward, "
        "BACKWARD_TRANSITIVE): type_mismatch at /fields/3/type (field weight_grams): "
        "reader type: string not compatible with writer type: int"
    ]
    assert "FAIL  ParcelShipped: v1, v2, v3 under BACKWARD_TRANSITIVE, 1 of 3 checks failed" in out


def test_policy_none_checks_nothing(tree: SchemaTree) -> None:
    code, out = tree.parcel("changed_type").policy("NONE").check()

    assert code == 0, out
    assert "ok    ParcelShipped: v1, v2 under NONE, 0 checks passed" in out


def test_location_inside_a_nested_record_names_the_field_path(tree: SchemaTree) -> None:
    line = {"type": "record", "name": "ParcelLine", "doc": "One packed item.", "fields": [
        {"name": "sku", "type": "string", "doc": "Stock keeping unit."},
        {"name": "quantity", "type": "int", "doc": "Units packed."},
    ]}
    v1 = fixture_definition("ParcelShipped.v1.avsc")
    v1["fields"].append({"name": "lines", "type": {"type": "array", "items": line},
                         "doc": "What is in the parcel."})
    tree.add(V1, v1)
    line["fields"][1]["type"] = "string"
    tree.add(V2, v1)

    code, out = tree.check()

    assert code == 1
    assert BACKWARD_BREAK + ("type_mismatch at /fields/4/type/items/fields/1/type "
                             "(field lines[].quantity): reader type: string not compatible "
                             "with writer type: int") in errors(out)
