"""Only the entry points read the environment; everything else is handed frozen settings.

Read from the source with ``ast``, like tests/test_layers.py, so nothing needs to run.
An entry point is a ``__main__`` module or the command line (``cli/``); the settings
classes take the environment as an argument (``from_env(env)``) and never look it up.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PACKAGES = ("schemas", "outbox", "services", "stack", "testkit", "console", "chaos", "bench",
            "cli")

PROCESS_MODULES: dict[str, str] = {
    "stack/supervisor.py": "its main() is the supervisor process's entry point"
                           " (python -m choreo.stack.supervisor): it builds StackSettings once",
    "outbox/poller.py": "its main() is the polling relay's entry point"
                        " (python -m choreo.outbox.poller): it builds PollerSettings once",
    "stack/links.py": "its main() is the fault proxies' entry point"
                      " (python -m choreo.stack.links): it builds StackSettings once",
}
"""Modules that are a process's entry point without being a ``__main__.py``."""

ALLOWED: dict[str, str] = {
    "stack/processes.py": "a child process inherits the caller's environment, plus its own"
                          " CHOREO_* from StackSettings.service_env; nothing is read from it",
    "outbox/telemetry.py": "the standard OTEL_* variables, read as the OpenTelemetry SDK"
                           " defines them (the SDK reads them from os.environ itself too);"
                           " no CHOREO_* variable",
    "stack/install.py": "apt-get runs with the caller's environment plus DEBIAN_FRONTEND;"
                        " nothing is read from it",
}
"""Modules below the entry points that touch ``os.environ``, and why."""


def is_entry_point(path: Path) -> bool:
    relative = path.relative_to(REPO)
    return (relative.name == "__main__.py" or relative.parts[0] == "cli"
            or str(relative) in PROCESS_MODULES)


def project_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


NAMES = ("environ", "environb", "getenv", "putenv")


def environment_uses(tree: ast.AST) -> Iterator[int]:
    """Lines that name ``os.environ``/``os.getenv``/... or import them from os."""
    for node in ast.walk(tree):
        attribute = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                     and node.value.id == "os" and node.attr in NAMES)
        imported = (isinstance(node, ast.ImportFrom) and node.module == "os"
                    and any(alias.name in NAMES for alias in node.names))
        if attribute or imported:
            yield node.lineno  # type: ignore[attr-defined]


def from_env_calls(tree: ast.AST) -> Iterator[int]:
    """Calls of ``X.from_env`` outside another ``from_env``: settings read from the
    settings of a part (a breaker's inside a service's) are still read at the entry."""
    composing = {id(node) for reader in ast.walk(tree)
                 if isinstance(reader, ast.FunctionDef) and reader.name == "from_env"
                 for node in ast.walk(reader)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_env" and id(node) not in composing):
            yield node.lineno


def test_only_entry_points_read_the_environment() -> None:
    wrong = sorted(f"{path.relative_to(REPO)}:{line}" for path in project_files()
                   if not is_entry_point(path) and str(path.relative_to(REPO)) not in ALLOWED
                   for line in environment_uses(ast.parse(path.read_text(), str(path))))
    assert wrong == []


def test_settings_are_built_only_by_entry_points() -> None:
    wrong = sorted(f"{path.relative_to(REPO)}:{line}" for path in project_files()
                   if not is_entry_point(path)
                   for line in from_env_calls(ast.parse(path.read_text(), str(path))))
    assert wrong == []


def test_the_allowed_modules_still_need_it() -> None:
    """An exception whose reason went away is removed, not left to excuse a new use."""
    for relative in ALLOWED:
        path = REPO / relative
        assert list(environment_uses(ast.parse(path.read_text(), str(path)))), relative


def test_the_scan_sees_the_entry_points() -> None:
    """A walker that found nothing would pass every check above."""
    entry = REPO / "services" / "payments" / "__main__.py"
    tree = ast.parse(entry.read_text())
    assert list(environment_uses(tree)) and list(from_env_calls(tree))
    assert not is_entry_point(REPO / "outbox" / "settings.py")


DSN = "postgresql://nobody@127.0.0.1:1/none"
"""Valid, and never connected to: every process below stops at its settings first."""


@pytest.mark.parametrize(("command", "variable", "value"), [
    (["cli", "status"], "CHOREO_REDIS_PORT", "six"),
    (["cli", "down"], "CHOREO_REPLICAS", "payments=0"),
    (["chaos"], "CHOREO_ORDER_DEADLINE_S", "soon"),
    (["choreo.services.psp"], "CHOREO_PSP_PORT", "80"),
    (["choreo.services.inventory"], "CHOREO_RESERVATION_TTL_S", "0"),
    (["choreo.services.payments"], "CHOREO_PSP_BREAKER_FAILURES", "many"),
    (["choreo.services.orders", "worker"], "CHOREO_METRICS_PORT", "http"),
    (["choreo.services.orders", "api"], "CHOREO_ORDERS_MAX_PENDING", "-1"),
])
def test_every_entry_point_exits_2_naming_a_bad_setting(command: list[str], variable: str,
                                                        value: str) -> None:
    env = {key: val for key, val in os.environ.items() if not key.startswith("CHOREO_")}
    env.update({"CHOREO_DATABASE_URL": DSN, "CHOREO_STATE_DIR": str(REPO / ".choreo-unused"),
                variable: value})
    result = subprocess.run([sys.executable, "-m", *command], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"{variable}={value!r}" in output
    assert "Traceback" not in output
