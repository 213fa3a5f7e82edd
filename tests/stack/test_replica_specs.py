"""Replicas as the launcher sees them: names, derived ports, the specs of every process.

Pure: no stack is started. ``tests/e2e/test_replicas.py`` runs them on the real stack.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from choreo.stack.errors import ConfigError
from choreo.stack.processes import ProcessRegistry
from choreo.stack.restart import plan
from choreo.stack.services import consumer_processes, service_components, spec_of
from choreo.stack.settings import REPLICA_PORT_STEP, StackSettings, is_consumer, split_replica


def settings_in(tmp_path: Path, replicas: str = "") -> StackSettings:
    return StackSettings.from_env({"CHOREO_STATE_DIR": str(tmp_path),
                                   "CHOREO_REPLICAS": replicas})


def test_replica_names_split_back_into_service_and_index() -> None:
    assert split_replica("orders-worker-2") == ("orders-worker", 2)
    assert split_replica("orders-worker") == ("orders-worker", 1)
    assert split_replica("payments-3") == ("payments", 3)
    assert split_replica("relay-orders") == ("relay-orders", 1)
    assert split_replica("orders-api") == ("orders-api", 1)
    assert is_consumer("payments-2") and not is_consumer("psp") and not is_consumer("psp-2")


def test_each_replica_gets_its_own_port_from_its_services(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, "payments=2,inventory=3")
    components = {c.name: c.port for c in service_components(settings)}
    assert components["payments-2"] == settings.port_of("payments") + REPLICA_PORT_STEP
    assert components["inventory-3"] == settings.port_of("inventory") + 2 * REPLICA_PORT_STEP
    assert "orders-worker-2" not in components
    assert len(set(components.values())) == len(components)
    assert spec_of("inventory-3").port(settings) == components["inventory-3"]


def test_a_replica_port_that_collides_or_leaves_the_range_fails_naming_it(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="same port"):
        replace(settings_in(tmp_path, "payments=2"), console_port=18182).validate()
    with pytest.raises(ConfigError, match=r"CHOREO_PAYMENTS_METRICS_PORT \+ 100 \(the port of"
                                          r" payments-2\)"):
        settings = settings_in(tmp_path, "payments=2")
        replace(settings, service_ports={**settings.service_ports, "payments": 65500}).validate()


def test_replicas_recorded_in_the_registry_are_seen_without_the_setting(
        tmp_path: Path) -> None:
    """``choreo down`` or ``status`` without ``--replicas`` still drains and shows them."""
    settings = settings_in(tmp_path)
    assert consumer_processes(settings) == ["inventory", "payments", "orders-worker",
                                            "wallet-worker", "notification"]
    settings.pid_dir.mkdir(parents=True)
    (settings.pid_dir / "payments-2.json").write_text("{}")
    assert ProcessRegistry(settings.pid_dir, settings.log_dir).names() == ["payments-2"]
    assert consumer_processes(settings) == ["inventory", "payments", "payments-2",
                                            "orders-worker", "wallet-worker", "notification"]


def test_a_rolling_restart_of_everything_takes_each_replica_in_turn(tmp_path: Path) -> None:
    names = plan(settings_in(tmp_path, "payments=2,orders-worker=2"), [], every=True)
    assert names == ["psp", "inventory", "payments", "payments-2", "orders-worker",
                     "orders-worker-2", "orders-api", "wallet-worker", "users", "wallet-api",
                     "notifier", "notification", "console"]
