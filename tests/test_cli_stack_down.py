"""Every command that needs the stack, run against a stack that is not there: one line
naming what it could not reach, exit status 3, within seconds, no traceback and no
librdkafka lines (issue 21: ``timeline`` ended in a ``requests`` traceback and ``bench
hop`` printed connection lines for a minute)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from choreo.stack.settings import REPO_ROOT, StackSettings

ORDER_ID = "00000000-0000-4000-8000-000000000001"
COMMANDS = [
    ["order", "--sku", "mug-white", "--quantity", "1"],
    ["timeline", ORDER_ID],
    ["demo"],
    ["stock"],
    ["stock", "--set", "mug-white=5"],
    ["trace", ORDER_ID],
    ["dlq", "list"],
    ["dlq", "show", "payments", "1"],
    ["dlq", "replay", "payments", "1"],
    ["chaos", "--duration", "20"],
    ["bench", "hop", "--seconds", "2"],
    ["bench", "relay", "--seconds", "2"],
    ["bench", "consumer"],
    ["bench", "saga"],
    ["bench", "soak", "--sagas", "10"],
]


@pytest.fixture(scope="module")
def nothing_listening(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every port of the stack on a port that was free a moment ago (held while the
    others are chosen, so no two are the same), and a state folder of its own."""
    held = []
    env = {**os.environ, "CHOREO_STATE_DIR": str(tmp_path_factory.mktemp("down"))}
    for field in fields(StackSettings):
        if field.name.endswith("_port"):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            held.append(probe)
            env[f"CHOREO_{field.name.upper()}"] = str(probe.getsockname()[1])
    for probe in held:
        probe.close()
    return env


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a[:3]) for a in COMMANDS])
def test_a_command_with_the_stack_down_says_what_it_could_not_reach(
        argv: list[str], nothing_listening: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "choreo.cli", *argv], cwd=tmp_path,
                          env={**nothing_listening, "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - started
    assert done.returncode == 3, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("choreo: cannot reach ") and "choreo up" in lines[0], lines
    assert not done.stdout.strip(), done.stdout
    assert took < 20, f"{took:.1f}s to say the stack is down"
