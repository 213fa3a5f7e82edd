"""``choreo connectors slots`` waits for a PostgreSQL that is still starting, then says
plainly that it could not reach it (compose runs it once, before every service)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from choreo.cli.main import main as choreo
from choreo.stack.components import port_is_free


def test_slots_wait_for_the_database_then_fail_with_its_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    closed = next(port for port in range(24990, 25000) if port_is_free(port))
    started = time.monotonic()
    assert choreo(["connectors", "slots", "--postgres-port", str(closed), "--wait", "2",
                   "--databases", "orders"]) == 3  # the stack, not the command
    assert time.monotonic() - started >= 2
    assert "cannot create the replication slot of orders-outbox" in capsys.readouterr().err


def rendered(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert choreo(["connectors", "render", "--databases", "orders"]) == 0
    return json.loads(capsys.readouterr().out)["config"]


def test_render_never_prints_a_password_and_keeps_a_provider_reference(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    secret = tmp_path / "postgres-password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("CHOREO_POSTGRES_PASSWORD_FILE", str(secret))
    assert rendered(capsys)["database.password"] == "********"
    reference = "${file:/opt/secrets/postgres.properties:password}"
    monkeypatch.setenv("CHOREO_CONNECT_PASSWORD_REFERENCE", reference)
    assert rendered(capsys)["database.password"] == reference
    monkeypatch.setenv("CHOREO_CONNECT_PASSWORD_REFERENCE", "s3cret")
    assert choreo(["connectors", "render", "--databases", "orders"]) == 2
    error = capsys.readouterr().err
    assert "CHOREO_CONNECT_PASSWORD_REFERENCE is not a config provider reference" in error
    assert "s3cret" not in error
