"""``choreo schemas check``: the gate a schema change passes before it is merged.

Consumers and producers upgrade independently and events outlive both, so every version of
an event must stay readable with the earlier ones under its policy, a released version
must never change, and every consumer must read every version ever written. Exit codes:
0 all good, 1 a rule is broken, 2 the check could not run (no such root, unusable policy
file, unknown ``--git-ref``), so CI fails either way.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from choreo.schemas.catalog import SCHEMA_DIR
from choreo.schemas.compatibility import EventTypeResult, check_event_type
from choreo.schemas.conventions import convention_problems, version_problems
from choreo.schemas.history import GitRefError, check_released
from choreo.schemas.parsing import ParsedSchema, parse_tree
from choreo.schemas.policy import POLICY_FILE, Policies, PolicyFileError

OK, BROKEN, CANNOT_RUN = 0, 1, 2


Contracts = Callable[[Path], tuple[str, list[str]]]
"""A summary line and the problems of checks that need the services' wiring, which this
package does not know (``cli.contracts`` supplies them)."""


def run_check(args: argparse.Namespace, contracts: Contracts | None = None) -> int:
    """Entry point for ``cli``; ``args.root`` and ``args.git_ref`` may be None."""
    root = Path(args.root).resolve() if args.root else SCHEMA_DIR
    return check(root, args.git_ref, contracts)


def check(root: Path, git_ref: str | None = None, contracts: Contracts | None = None) -> int:
    if not root.is_dir():
        print(f"schemas check: {root} is not a directory")
        return CANNOT_RUN
    try:
        policies = Policies.load(root / POLICY_FILE)
        history = check_released(root, git_ref)
    except (PolicyFileError, GitRefError) as error:
        print(f"schemas check: {error}")
        return CANNOT_RUN

    tree = parse_tree(root)
    by_type: dict[str, list[ParsedSchema]] = defaultdict(list)
    for schema in tree.schemas:
        by_type[schema.event.event_type].append(schema)
    subjects = {name for s in tree.schemas for name in (s.event.event_type, s.event.topic)}
    results = [
        check_event_type(versions, policies.for_event(event_type, versions[0].event.topic))
        for event_type, versions in sorted(by_type.items())
    ]
    contract_summary, contract_problems = contracts(root) if contracts else ("", [])
    problems = [
        *tree.problems,
        *convention_problems(tree.schemas),
        *version_problems(root),
        *(f"{POLICY_FILE}: field 'subjects.{name}' names no event type or topic under {root}"
          for name in policies.unmatched_subjects(subjects)),
        *(str(found) for result in results for found in result.incompatibilities),
        *history.problems,
        *contract_problems,
    ]

    print(f"schemas check: {root}")
    for result in results:
        print(_summary(result))
    if history.notice:
        print(f"notice: {history.notice}")
    else:
        print(f"released versions: {history.compared} compared with {git_ref or 'HEAD'}")
    if contract_summary:
        print(contract_summary)
    for problem in problems:
        print(f"error: {problem}")
    if problems:
        print(f"schemas check FAILED: {_count(len(problems), 'problem')}")
        return BROKEN
    print(f"schemas check passed: {_count(len(results), 'event type')}")
    return OK


def _summary(result: EventTypeResult) -> str:
    versions = ", ".join(f"v{version}" for version in result.versions)
    failed = len(result.incompatibilities)
    if failed:
        verdict = f"{failed} of {_count(result.checks, 'check')} failed"
    elif len(result.versions) == 1:
        verdict = "no earlier version"
    else:
        verdict = f"{_count(result.checks, 'check')} passed"
    return (f"{'FAIL' if failed else 'ok':<4}  {result.event_type}: {versions} "
            f"under {result.policy}, {verdict}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
