"""The import graph: layers that only look down, services that keep to themselves, no cycle.

Read from the source with ``ast`` (imports inside functions count too: a lazy import
that hides a cycle is still one), so the test needs nothing running.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LAYERS: dict[str, set[str]] = {
    "connectors": set(),
    "schemas": set(),
    "outbox": {"schemas", "connectors"},
    "services": {"outbox", "schemas"},
    "stack": {"outbox", "schemas", "connectors"},
    "testkit": {"connectors", "stack", "services", "outbox", "schemas"},
    "chaos": {"connectors", "testkit", "stack", "services", "outbox", "schemas"},
    "bench": {"connectors", "testkit", "stack", "services", "outbox", "schemas"},
    "console": {"connectors", "stack", "services", "outbox", "schemas"},
    "cli": {"connectors", "console", "chaos", "bench", "testkit", "stack", "services", "outbox",
            "schemas"},
}
"""Each top-level package and the packages below it that it may import."""


def module_name(path: Path) -> str:
    """``outbox/writer.py`` is ``choreo.outbox.writer`` (pyproject's package-dir)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(("choreo", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def layer(module: str) -> str:
    return module.split(".")[1]


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in LAYERS
            for path in (REPO / package).rglob("*.py")}


def imported(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The project modules ``path`` imports (a name imported from a package counts as its
    submodule when there is one)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            if not all(name in modules for name in names):  # a name the package defines
                names.append(node.module)
        else:
            continue
        for name in names:
            if name in modules:
                yield name


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: set(imported(path, modules)) - {name} for name, path in modules.items()}


def test_every_package_imports_only_the_layers_below_it() -> None:
    wrong = sorted(f"{module} imports {target}" for module, targets in graph().items()
                   for target in targets
                   if (here := layer(module)) != (there := layer(target))
                   and there not in LAYERS[here])
    assert wrong == []


def test_a_service_imports_no_other_service() -> None:
    def service(module: str) -> str:
        return ".".join(module.split(".")[:3])

    wrong = sorted(f"{module} imports {target}" for module, targets in graph().items()
                   if module.startswith("choreo.services.")
                   for target in targets
                   if target.startswith("choreo.services.") and service(target) != service(module)
                   and target != "choreo.services")
    assert wrong == []


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_nothing_imports_a_folder_by_its_bare_name() -> None:
    """Run from the checkout, ``import outbox`` would still work (the working directory
    is on the path) and load a second copy of every module beside ``choreo.outbox``,
    with classes that are not the same; installed, it fails. Tests count too."""
    bare = set(LAYERS)
    wrong = []
    for path in [*REPO.glob("*/**/*.py")]:
        if ".venv" in path.parts or path.parts[len(REPO.parts)] == "choreo":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and node.level == 0 else [])
            wrong += [f"{path.relative_to(REPO)}: {name}" for name in names
                      if name.split(".")[0] in bare]
    assert wrong == []


PARTICIPANTS = ("orders", "inventory", "payments", "users", "wallet", "notification")
"""Built on the library as a team would build theirs. The psp is not one: it stands in for
an external provider and shares only the library's settings, logs and tracing set-up."""


def test_participants_use_only_the_library_front_door() -> None:
    """``choreo.outbox`` exports what a service needs (its ``__all__``); a participant
    that reached into ``choreo.outbox.runner`` or ``.writer`` would show that the door
    is missing something a team's own service would need too."""
    wrong = []
    for name in PARTICIPANTS:
        for path in (REPO / "services" / name).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                           else [node.module] if isinstance(node, ast.ImportFrom)
                           and node.module else [])
                wrong += [f"{path.relative_to(REPO)}: {module}" for module in modules
                          if module.startswith("choreo.outbox.")]
    assert wrong == []


def test_the_front_door_is_small_and_complete() -> None:
    import choreo.outbox as library

    assert len(library.__all__) <= 18
    assert all(hasattr(library, name) for name in library.__all__)


def test_the_checks_see_the_tree() -> None:
    """A walker that found nothing would pass every check above."""
    edges = graph()
    assert "choreo.cli.main" in edges and "choreo.stack.launcher" in edges["choreo.cli.main"]
    assert "choreo.outbox.consumer" in edges
