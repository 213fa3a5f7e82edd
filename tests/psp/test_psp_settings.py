"""Settings come from the environment once, and a bad value stops start-up naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from choreo.outbox.errors import ConfigError
from choreo.services.psp.settings import PspSettings
from choreo.stack.settings import REPO_ROOT

DSN = "postgresql://postgres@127.0.0.1:5432/psp"


def test_defaults() -> None:
    settings = PspSettings.from_env({"CHOREO_DATABASE_URL": DSN})
    assert settings == PspSettings(database_url=DSN, port=18090, slow_delay_s=2.0)


def test_overrides() -> None:
    settings = PspSettings.from_env({"CHOREO_DATABASE_URL": DSN, "CHOREO_PSP_PORT": "28090",
                                     "CHOREO_PSP_SLOW_DELAY_S": "0.5"})
    assert (settings.port, settings.slow_delay_s) == (28090, 0.5)


@pytest.mark.parametrize(("env", "variable"), [
    ({}, "CHOREO_DATABASE_URL"),
    ({"CHOREO_DATABASE_URL": "  "}, "CHOREO_DATABASE_URL"),
    ({"CHOREO_DATABASE_URL": "not a dsn"}, "CHOREO_DATABASE_URL"),
    ({"CHOREO_DATABASE_URL": DSN, "CHOREO_PSP_PORT": "http"}, "CHOREO_PSP_PORT"),
    ({"CHOREO_DATABASE_URL": DSN, "CHOREO_PSP_PORT": "80"}, "CHOREO_PSP_PORT"),
    ({"CHOREO_DATABASE_URL": DSN, "CHOREO_PSP_SLOW_DELAY_S": "soon"}, "CHOREO_PSP_SLOW_DELAY_S"),
    ({"CHOREO_DATABASE_URL": DSN, "CHOREO_PSP_SLOW_DELAY_S": "-1"}, "CHOREO_PSP_SLOW_DELAY_S"),
    ({"CHOREO_DATABASE_URL": DSN, "CHOREO_PSP_SLOW_DELAY_S": "nan"}, "CHOREO_PSP_SLOW_DELAY_S"),
])
def test_bad_setting_is_named(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        PspSettings.from_env(env)


def test_process_without_database_url_exits_at_once_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHOREO_")}
    result = subprocess.run([sys.executable, "-m", "choreo.services.psp"], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["level"] == "error"
    assert "CHOREO_DATABASE_URL" in line["msg"]
