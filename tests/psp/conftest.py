"""Fixtures for the psp tests: the real ``python -m choreo.services.psp`` process on the real stack.

The psp runs as a subprocess recorded in the stack's pid directory (so a crashed test
run leaves nothing that ``choreo down`` cannot find) and is always stopped by pid.
Every test that talks to it starts from an empty ledger.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from choreo.services.payments.psp_client import PspClient
from choreo.stack.components import free_port
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings
from tests.psp.support import LEDGER_DATABASE, Api, Ledger, psp_env, start_psp


@pytest.fixture(scope="session")
def psp_url(running_stack: StackSettings, psp_registry: ProcessRegistry) -> Iterator[str]:
    try:
        # A port of its own: the stack's psp may be running on ``psp_port``.
        yield start_psp(psp_registry, "psp-test", psp_env(running_stack, free_port()))
    finally:
        psp_registry.stop("psp-test")


@pytest.fixture(scope="session")
def ledger(running_stack: StackSettings, psp_url: str) -> Ledger:
    """The psp tests' ledger; the psp has created its tables by now."""
    return Ledger(running_stack.database_dsn(LEDGER_DATABASE))


@pytest.fixture
def api(psp_url: str, ledger: Ledger) -> Api:
    """The psp with an empty ledger (so totals and row counts start at zero)."""
    ledger.truncate()
    return Api(psp_url)


@pytest.fixture
def client(api: Api) -> Iterator[PspClient]:
    with PspClient(api.base_url, timeout_s=5.0) as psp:
        yield psp
