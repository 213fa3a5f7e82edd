"""``choreo up`` / ``down`` / ``status`` on a stack of its own, and fast failures on bad config."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreo.outbox.wire import OUTBOX_TEMPLATE, render
from choreo.stack import launcher, manifest
from choreo.stack.components import Component
from choreo.stack.connectors import ConnectClient, template_values
from choreo.stack.errors import ConfigError
from choreo.stack.processes import TrackedProcess
from choreo.stack.settings import REPO_ROOT, StackSettings
from tests.conftest import PORT_OFFSET, TEST_ENV, ports_shifted_by

pytestmark = pytest.mark.stack

OWN_PORTS = ports_shifted_by(PORT_OFFSET - 5000)
"""Below the kernel's ephemeral range (32768-60999): a client connection's source port
there would make a listening port look taken, now and then, for no reason of ours."""


@pytest.fixture
def own_env() -> Iterator[dict[str, str]]:
    """A second stack; its state lives in the repo because pytest's tmp folders are private
    to root, and PostgreSQL runs as the ``postgres`` user."""
    state_dir = REPO_ROOT / ".choreo-test-lifecycle"
    env = {**os.environ, **TEST_ENV, **OWN_PORTS, "CHOREO_STATE_DIR": str(state_dir)}
    try:
        yield env
    finally:
        launcher.down(StackSettings.from_env(env), report=lambda line: None)
        shutil.rmtree(state_dir, ignore_errors=True)


def choreo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "choreo.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def test_down_stops_every_process_and_up_works_again(own_env: dict[str, str]) -> None:
    first = choreo(own_env, "up")
    assert first.returncode == 0, first.stderr
    again = choreo(own_env, "up")
    assert "already running" in again.stdout

    status = choreo(own_env, "status")
    assert status.returncode == 0, status.stdout
    servers = {"postgres", "redis", "broker", "connect"}
    services = {*manifest.names(), "console"}
    assert status.stdout.count("healthy") == len(servers | services)
    pid_dir = Path(own_env["CHOREO_STATE_DIR"]) / "pids"
    started = {p.stem: json.loads(p.read_text()) for p in pid_dir.glob("*.json")}
    assert set(started) == {"supervisor", *servers, *services}

    assert choreo(own_env, "down").returncode == 0
    for name, entry in started.items():
        process = TrackedProcess(name, entry["pid"], entry["start_ticks"], Path(entry["log_file"]))
        assert not process.alive(), f"{name} still runs"
    assert not list(pid_dir.glob("*.json"))

    assert choreo(own_env, "up").returncode == 0
    assert choreo(own_env, "status").returncode == 0


def test_port_in_use_fails_fast_naming_the_port(own_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", int(own_env["CHOREO_POSTGRES_PORT"])))
        squatter.listen()
        result = choreo(own_env, "up")
    assert result.returncode == 2
    assert f"port {own_env['CHOREO_POSTGRES_PORT']} for postgres is in use" in result.stderr


def test_missing_binary_fails_fast_naming_it(tmp_path: Path) -> None:
    settings = StackSettings.from_env({"CHOREO_STATE_DIR": str(tmp_path), **OWN_PORTS})
    broken = Component("broker", 39999, ["/nonexistent/java", "broker"], lambda: True)
    with pytest.raises(ConfigError, match="broker: executable '/nonexistent/java' not found"):
        launcher.start_component(broken, launcher.registry_for(settings), settings, print)


def test_malformed_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CHOREO_REDIS_PORT='six' is not a port"):
        StackSettings.from_env({"CHOREO_REDIS_PORT": "six"})


def test_connector_with_unknown_field_is_rejected_by_name(running_stack: StackSettings) -> None:
    connector = render(OUTBOX_TEMPLATE, template_values(running_stack, "orders"))
    config = {**connector["config"], "databse.hostname": "127.0.0.1"}
    with pytest.raises(ConfigError, match="databse.hostname: unknown field"):
        ConnectClient(running_stack.connect_url).validate("probe", config, "bad.json")
