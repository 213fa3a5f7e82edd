"""The policy file: a default, overrides per event type or topic, and loud failures."""

from __future__ import annotations

import json

import pytest
from schema_tree import SchemaTree

from choreo.schemas.policy import Policies, Policy, PolicyFileError

ALLOWED = ("BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, "
           "NONE")


@pytest.mark.parametrize(("policy", "backward", "forward", "transitive"), [
    (Policy.BACKWARD, True, False, False),
    (Policy.BACKWARD_TRANSITIVE, True, False, True),
    (Policy.FORWARD, False, True, False),
    (Policy.FORWARD_TRANSITIVE, False, True, True),
    (Policy.FULL, True, True, False),
    (Policy.FULL_TRANSITIVE, True, True, True),
    (Policy.NONE, False, False, False),
])
def test_each_policy_means_what_schema_registry_means(
    policy: Policy, backward: bool, forward: bool, transitive: bool
) -> None:
    assert (policy.backward, policy.forward, policy.transitive) == (backward, forward, transitive)


def test_without_a_policy_file_everything_is_full_transitive(tree: SchemaTree) -> None:
    assert Policies.load(tree.root / "compatibility.json").for_event("X", "x.events") is \
        Policy.FULL_TRANSITIVE


def test_an_event_types_entry_wins_over_its_topics() -> None:
    policies = Policies(Policy.FULL_TRANSITIVE, {"shipping.events": Policy.BACKWARD,
                                                 "ParcelShipped": Policy.FORWARD})

    assert policies.for_event("ParcelShipped", "shipping.events") is Policy.FORWARD
    assert policies.for_event("ParcelLost", "shipping.events") is Policy.BACKWARD
    assert policies.for_event("OrderPlaced", "order.events") is Policy.FULL_TRANSITIVE


def test_a_topic_policy_applies_to_the_check(tree: SchemaTree) -> None:
    code, out = tree.parcel("widen_int_to_long").policy(**{"shipping.events": "BACKWARD"}).check()

    assert code == 0, out
    assert "ok    ParcelShipped: v1, v2 under BACKWARD, 1 check passed" in out


@pytest.mark.parametrize(("policy", "field", "value"), [
    ({"default": "FULLY", "subjects": {}}, "default", "'FULLY'"),
    ({"default": "FULL", "subjects": {"ParcelShipped": "backward"}}, "subjects.ParcelShipped",
     "'backward'"),
    ({"subjects": {"shipping.events": 3}}, "subjects.shipping.events", "3"),
])
def test_an_unknown_policy_fails_naming_the_field(
    tree: SchemaTree, policy: dict[str, object], field: str, value: str
) -> None:
    (tree.root / "compatibility.json").write_text(json.dumps(policy))

    code, out = tree.parcel().check()

    assert code == 2
    assert out == (f"schemas check: {tree.root / 'compatibility.json'}: field '{field}': "
                   f"unknown policy {value} (allowed: {ALLOWED})\n")


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON: Expecting property name enclosed in double quotes"),
    ("[]", "expected an object with 'default' and 'subjects'"),
    ('{"default": "FULL", "subject": {}}', "unknown field(s) subject"),
    ('{"subjects": []}', "field 'subjects' must be an object"),
])
def test_a_malformed_policy_file_fails(tree: SchemaTree, text: str, message: str) -> None:
    path = tree.root / "compatibility.json"
    path.write_text(text)

    with pytest.raises(PolicyFileError, match=f"^{path}: ") as raised:
        Policies.load(path)

    assert message in str(raised.value)


def test_a_subject_naming_nothing_fails_instead_of_silently_using_the_default(
    tree: SchemaTree,
) -> None:
    code, out = tree.parcel().policy(ParcelShiped="NONE").check()

    assert code == 1
    assert (f"error: compatibility.json: field 'subjects.ParcelShiped' names no event type or "
            f"topic under {tree.root}") in out
