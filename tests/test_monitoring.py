"""The shipped alert rules and dashboard: valid, tested with promtool, and asking only for
metrics the code really defines."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "infra" / "monitoring"
METRIC = re.compile(r"\bchoreo_[a-z_]+\b")
KINDS = {"Counter", "Gauge", "Histogram"}


def defined_metrics() -> dict[str, str]:
    """Every metric the project's code creates, by exposed name: ``name -> kind``."""
    found: dict[str, str] = {}
    for package in ("outbox", "services", "stack"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in KINDS and node.args
                        and isinstance(node.args[0], ast.Constant)):
                    found[node.args[0].value] = node.func.id
    return found


def exposed_names() -> set[str]:
    """The series names Prometheus sees, histograms with their three suffixes."""
    names = set()
    for name, kind in defined_metrics().items():
        names.add(name)
        if kind == "Histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def queries() -> dict[str, str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    found = {f"panel {p['title']!r}": t["expr"] for p in dashboard["panels"]
             for t in p["targets"]}
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    found |= {f"alert {r['alert']}": r["expr"] for g in rules["groups"] for r in g["rules"]}
    return found


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: infra/test.sh installs Debian's prometheus package")
    return subprocess.run([tool, *args], cwd=MONITORING, capture_output=True, text=True,
                          timeout=60)


def test_the_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_when_they_should_and_not_before() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_and_alerts_name_only_metrics_the_services_export() -> None:
    exported = exposed_names()
    unknown = {f"{where}: {name}" for where, expr in queries().items()
               for name in METRIC.findall(expr) if name not in exported}
    assert unknown == set()
    assert len(queries()) >= 15 and {"choreo_hop_seconds", "choreo_sagas_total"} <= exported
