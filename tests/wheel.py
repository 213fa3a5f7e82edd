"""The wheel a user installs, built as pip builds it (tests of what it holds and of the
quickstart installed from it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build_wheel(out: Path) -> Path:
    """Built from a copy: setuptools leaves ``build/`` in the tree it builds."""
    source = out / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".choreo*", ".git", "build", "*.egg-info", "__pycache__", "node_modules",
        ".pytest_cache", ".ruff_cache", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(source)], check=True, timeout=300)
    [built] = out.glob("choreo-*.whl")
    return built
