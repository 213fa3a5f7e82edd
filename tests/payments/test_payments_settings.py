"""The service's own settings: defaults, and a bad value named before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from choreo.outbox.breaker import CircuitSettings
from choreo.outbox.errors import ConfigError
from choreo.services.payments.settings import PaymentsSettings
from choreo.stack.settings import REPO_ROOT


def test_the_psp_url_defaults_to_the_stack_port() -> None:
    settings = PaymentsSettings.from_env({"CHOREO_PSP_PORT": "28090"})

    assert settings == PaymentsSettings(psp_url="http://127.0.0.1:28090", psp_timeout_s=5.0,
                                        currency="EUR")
    assert PaymentsSettings.from_env({}).psp_url == "http://127.0.0.1:18090"


def test_answered_failures_are_sent_again_twice_unless_told_otherwise() -> None:
    assert PaymentsSettings.from_env({}).psp_answered_retries == 2
    assert PaymentsSettings.from_env(
        {"CHOREO_PSP_ANSWERED_RETRIES": "0"}).psp_answered_retries == 0


def test_an_explicit_url_wins() -> None:
    settings = PaymentsSettings.from_env({"CHOREO_PSP_URL": "https://psp.example:8443",
                                          "CHOREO_PSP_PORT": "28090",
                                          "CHOREO_PSP_TIMEOUT_S": "2.5"})

    assert (settings.psp_url, settings.psp_timeout_s) == ("https://psp.example:8443", 2.5)


def test_the_breaker_has_defaults_and_takes_both_thresholds() -> None:
    assert PaymentsSettings.from_env({}).breaker == CircuitSettings(fail_max=5,
                                                                    reset_timeout_s=5.0)
    settings = PaymentsSettings.from_env({"CHOREO_PSP_BREAKER_FAILURES": "3",
                                          "CHOREO_PSP_BREAKER_RESET_S": "0.5"})
    assert settings.breaker == CircuitSettings(fail_max=3, reset_timeout_s=0.5)


@pytest.mark.parametrize(("env", "message"), [
    ({"CHOREO_PSP_URL": "psp:8090"}, "CHOREO_PSP_URL='psp:8090' is not an http"),
    ({"CHOREO_PSP_PORT": "eighty"}, "CHOREO_PSP_PORT='eighty' is not a port"),
    ({"CHOREO_PSP_PORT": "80"}, "CHOREO_PSP_PORT='80' is not a port"),
    ({"CHOREO_PSP_TIMEOUT_S": "soon"}, "CHOREO_PSP_TIMEOUT_S='soon' is not a number"),
    ({"CHOREO_PSP_TIMEOUT_S": "0"}, "CHOREO_PSP_TIMEOUT_S='0' is outside"),
    ({"CHOREO_PSP_BREAKER_FAILURES": "0"}, "CHOREO_PSP_BREAKER_FAILURES='0' is not a whole"),
    ({"CHOREO_PSP_BREAKER_FAILURES": "2.5"}, "CHOREO_PSP_BREAKER_FAILURES='2.5' is not a"),
    ({"CHOREO_PSP_BREAKER_RESET_S": "later"}, "CHOREO_PSP_BREAKER_RESET_S='later' is not a"),
    ({"CHOREO_PSP_BREAKER_RESET_S": "-1"}, "CHOREO_PSP_BREAKER_RESET_S='-1' is outside"),
    ({"CHOREO_PSP_ANSWERED_RETRIES": "-1"}, "CHOREO_PSP_ANSWERED_RETRIES='-1' is not a whole"),
    ({"CHOREO_PSP_ANSWERED_RETRIES": "11"}, "CHOREO_PSP_ANSWERED_RETRIES='11' is not a whole"),
])
def test_a_bad_value_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PaymentsSettings.from_env(env)


def test_the_process_exits_2_naming_the_variable() -> None:
    env = {**os.environ, "CHOREO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "CHOREO_PSP_TIMEOUT_S": "soon"}

    result = subprocess.run([sys.executable, "-m", "choreo.services.payments"], env=env,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    assert result.returncode == 2
    assert "CHOREO_PSP_TIMEOUT_S='soon' is not a number" in result.stderr
