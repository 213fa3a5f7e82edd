"""``choreo connectors slots`` waits for a PostgreSQL that is still starting, then says
plainly that it could not reach it (compose runs it once, before every service)."""

from __future__ import annotations

import time

import pytest

from choreo.cli.main import main as choreo
from choreo.stack.components import port_is_free


def test_slots_wait_for_the_database_then_fail_with_its_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    closed = next(port for port in range(24990, 25000) if port_is_free(port))
    started = time.monotonic()
    assert choreo(["connectors", "slots", "--postgres-port", str(closed), "--wait", "2",
                   "--databases", "orders"]) == 2
    assert time.monotonic() - started >= 2
    assert "cannot create the replication slot of orders-outbox" in capsys.readouterr().err
