"""Compatibility policies: which earlier versions a new schema version must stay readable with.

The names and meanings are Confluent Schema Registry's, so a rule reads the same here as in
a registry the project may adopt later. They live in ``compatibility.json`` at the schema
root: a default plus overrides per subject, where a subject is an event type
(``OrderPlaced``) or a topic (``order.events``). An event type's own entry wins over its
topic's, because the narrower rule is the deliberate one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

POLICY_FILE = "compatibility.json"


class Policy(StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def backward(self) -> bool:
        """The new version, as reader, must read data written with the older ones."""
        return self.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """The older versions, as readers, must read data written with the new one."""
        return self.startswith(("FORWARD", "FULL"))

    @property
    def transitive(self) -> bool:
        """Against every earlier version, not just the one before."""
        return self.endswith("_TRANSITIVE")


DEFAULT_POLICY = Policy.FULL_TRANSITIVE
"""Events sit in topics for their whole retention, and services upgrade one at a time, so
any consumer version may meet any producer version: full compatibility with all of them."""


class PolicyFileError(ValueError):
    """``compatibility.json`` cannot be used; the message names the offending field."""


@dataclass(frozen=True)
class Policies:
    default: Policy = DEFAULT_POLICY
    subjects: Mapping[str, Policy] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Policies:
        """Read the policy file; without one every event type gets the default policy."""
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise PolicyFileError(f"{path}: not valid JSON: {error}") from None
        if not isinstance(raw, dict):
            raise PolicyFileError(f"{path}: expected an object with 'default' and 'subjects'")
        unknown = sorted(set(raw) - {"default", "subjects"})
        if unknown:
            raise PolicyFileError(f"{path}: unknown field(s) {', '.join(unknown)}")
        subjects = raw.get("subjects", {})
        if not isinstance(subjects, dict):
            raise PolicyFileError(f"{path}: field 'subjects' must be an object")
        return cls(
            default=_policy(path, "default", raw.get("default", DEFAULT_POLICY.value)),
            subjects={
                name: _policy(path, f"subjects.{name}", value) for name, value in subjects.items()
            },
        )

    def for_event(self, event_type: str, topic: str) -> Policy:
        if event_type in self.subjects:
            return self.subjects[event_type]
        return self.subjects.get(topic, self.default)

    def unmatched_subjects(self, known: Iterable[str]) -> list[str]:
        """Subjects naming no event type or topic: a typo would silently leave the default."""
        return sorted(set(self.subjects) - set(known))


def _policy(path: Path, field_name: str, value: Any) -> Policy:
    try:
        return Policy(value)
    except ValueError:
        allowed = ", ".join(policy.value for policy in Policy)
        raise PolicyFileError(
            f"{path}: field '{field_name}': unknown policy {value!r} (allowed: {allowed})"
        ) from None
