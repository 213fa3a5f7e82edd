"""Build throwaway schema folders laid out like ``schemas/`` and run the check on them.

The fixture event ``ParcelShipped`` (aggregate ``shipping``) exists only here, so the tests
never depend on how the project's real events evolve.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from choreo.schemas.check import check

FIXTURES = Path(__file__).parent / "fixtures"
V1 = "shipping/ParcelShipped.v1.avsc"
V2 = "shipping/ParcelShipped.v2.avsc"


@dataclass(frozen=True)
class SchemaTree:
    root: Path

    def add(self, file: str, source: Path | dict[str, Any]) -> Path:
        """Write ``file`` (e.g. ``shipping/ParcelShipped.v2.avsc``) from a fixture or a dict."""
        path = self.root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text() if isinstance(source, Path) else json.dumps(source, indent=2)
        path.write_text(text)
        return path

    def parcel(self, v2_fixture: str | None = None) -> SchemaTree:
        """ParcelShipped v1, plus ``fixtures/v2/<v2_fixture>.avsc`` as v2 when given."""
        self.add(V1, FIXTURES / "ParcelShipped.v1.avsc")
        if v2_fixture:
            self.add(V2, FIXTURES / "v2" / f"{v2_fixture}.avsc")
        return self

    def policy(self, default: str = "FULL_TRANSITIVE", **subjects: str) -> SchemaTree:
        policy = {"default": default, "subjects": subjects}
        (self.root / "compatibility.json").write_text(json.dumps(policy))
        return self

    def check(self, git_ref: str | None = None) -> tuple[int, str]:
        """Exit code and everything the check printed."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = check(self.root, git_ref)
        return code, out.getvalue()


def fixture_definition(name: str) -> dict[str, Any]:
    """A fixture schema as a dict, for tests that tweak one detail of it."""
    return json.loads((FIXTURES / name).read_text())


def git(repo: Path, *args: str) -> str:
    """Run git in a test repository with an identity, whatever the machine's config."""
    command = ["git", "-C", str(repo), "-c", "user.name=choreo tests",
               "-c", "user.email=tests@choreo.invalid", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout
