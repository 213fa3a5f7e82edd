"""The CI path: ``choreo schemas check`` as a process, on a broken tree and on the real one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from schema_tree import SchemaTree

from choreo.stack.settings import REPO_ROOT


def choreo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "choreo.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_a_breaking_change_fails_the_command(tree: SchemaTree) -> None:
    tree.parcel("changed_type")

    done = choreo("schemas", "check", "--root", str(tree.root))

    assert done.returncode == 1, done.stdout + done.stderr
    assert ("error: ParcelShipped: v2 as reader cannot read data written with v1 (backward, "
            "FULL_TRANSITIVE): type_mismatch at /fields/2/type (field weight_grams): "
            "reader type: string not compatible with writer type: int") in done.stdout


def test_the_projects_schemas_pass() -> None:
    done = choreo("schemas", "check")

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"schemas check: {Path(REPO_ROOT, 'schemas')}\n")
    assert "schemas check passed" in done.stdout
    assert "released versions:" in done.stdout  # the project is a git repo: edits are caught


def test_the_contracts_command_lists_every_subscription_and_passes() -> None:
    done = choreo("schemas", "contracts")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "payments   reads StockReserved            with v1" in done.stdout
    assert "contracts hold: 0 problems" in done.stdout
    assert "\ncontracts: " in choreo("schemas", "check").stdout
