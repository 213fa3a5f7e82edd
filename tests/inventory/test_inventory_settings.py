"""The inventory's settings fail fast, naming the variable; ``python -m`` reports it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from choreo.outbox.errors import ConfigError
from choreo.services.inventory.settings import InventorySettings
from choreo.stack.settings import REPO_ROOT


@pytest.mark.parametrize(("raw", "ttl"), [(None, 120.0), ("", 120.0), ("30", 30.0),
                                          (" 0.5 ", 0.5)])
def test_reservation_ttl(raw: str | None, ttl: float) -> None:
    env = {} if raw is None else {"CHOREO_RESERVATION_TTL_S": raw}
    assert InventorySettings.from_env(env).reservation_ttl_s == ttl


@pytest.mark.parametrize("raw", ["soon", "0", "-5", "nan", "inf"])
def test_a_bad_reservation_ttl_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="CHOREO_RESERVATION_TTL_S"):
        InventorySettings.from_env({"CHOREO_RESERVATION_TTL_S": raw})


def test_the_service_exits_2_on_a_bad_setting_before_connecting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "choreo.services.inventory"], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=30,
        env={"CHOREO_RESERVATION_TTL_S": "soon", "CHOREO_DATABASE_URL": "postgresql://x@nowhere/x",
             "PATH": ""},
    )
    assert result.returncode == 2
    assert "CHOREO_RESERVATION_TTL_S" in result.stderr
