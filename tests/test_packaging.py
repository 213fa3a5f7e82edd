"""What ``pip install`` of the wheel puts into a user's site-packages: ``choreo`` and its
dist-info, nothing else (issue 22). Generic names such as ``cli``, ``services`` or
``outbox`` used to be installed as top-level packages, and would have broken any
environment that already had one."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.wheel import REPO, build_wheel

FOLDERS = ("cli", "stack", "services", "schemas", "bench", "chaos", "console", "testkit",
           "outbox", "connectors")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_installs_only_the_choreo_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"choreo"}
    assert "choreo/outbox/schema.sql" in names
    schemas = [path.relative_to(REPO).as_posix() for path in (REPO / "schemas").rglob("*.avsc")]
    assert schemas and {f"choreo/{schema}" for schema in schemas} <= set(names)
    assert "choreo/services/orders/openapi.json" in names
    assert "choreo/connectors/outbox-postgres.json" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "choreo = choreo.cli.main:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()


def test_every_package_folder_is_listed() -> None:
    """pyproject lists the packages by hand (package-dir mapping): a new folder with an
    ``__init__.py`` missing from the list would be left out of the wheel silently."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {"choreo"} | {
        "choreo." + ".".join(init.parent.relative_to(REPO).parts)
        for folder in FOLDERS for init in (REPO / folder).rglob("__init__.py")
        if "__pycache__" not in init.parts}
    assert set(config["packages"]) == found
    assert config["package-dir"] == {"choreo": "choreo",
                                     **{f"choreo.{f}": f for f in FOLDERS}}
