"""Fixtures for the schema check tests: pure files and git, no servers."""

from __future__ import annotations

from pathlib import Path

import pytest
from schema_tree import SchemaTree


@pytest.fixture
def tree(tmp_path: Path) -> SchemaTree:
    """An empty schema root one level below ``tmp_path``, so git tests can make
    ``tmp_path`` the repository and exercise a root that is not the repository's top."""
    root = tmp_path / "schemas"
    root.mkdir()
    return SchemaTree(root)
