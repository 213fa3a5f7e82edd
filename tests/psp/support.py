"""What the psp tests share: start the real psp process, talk to it, read its tables.

Tests look at the ledger tables directly: "exactly one capture" is a row count, not a
claim the API makes about itself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import requests

from choreo.services.payments.psp_client import Charge, PspClient, PspUnavailable
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import REPO_ROOT, StackSettings
from tests.support import scratch_database

SLOW_DELAY_S = 1.0
"""tok_slow's delay in the tests: well above CLIENT_TIMEOUT_S, short enough to wait out."""
CLIENT_TIMEOUT_S = 0.3
STARTUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Api:
    """Raw HTTP against the psp, for asserting exact statuses, headers and bodies."""

    base_url: str

    def post(self, path: str, body: Any, key: str | None = None,
             timeout_s: float = 10.0) -> requests.Response:
        headers = {"Idempotency-Key": key} if key is not None else {}
        return requests.post(self.base_url + path, json=body, headers=headers, timeout=timeout_s)

    def charge(self, key: str | None, token: str = "tok_ok", amount_cents: int = 1250,
               reference: str = "order-1", timeout_s: float = 10.0) -> requests.Response:
        return self.post("/v1/charges", charge_body(token, amount_cents, reference), key,
                         timeout_s)

    def post_raw(self, path: str, data: bytes, key: str | None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key is not None else {}
        return requests.post(self.base_url + path, data=data, headers=headers, timeout=10)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> requests.Response:
        return requests.get(self.base_url + path, params=params, timeout=10)


@dataclass(frozen=True)
class Ledger:
    """Direct reads of the psp's tables."""

    dsn: str

    def count(self, table: str, column: str | None = None, value: str | None = None) -> int:
        query = f"SELECT count(*) FROM {table}"
        params: tuple[str, ...] = ()
        if column is not None and value is not None:
            query += f" WHERE {column} = %s"
            params = (value,)
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(query.encode(), params).fetchone()
        assert row is not None
        return int(row[0])

    def truncate(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE refunds, charges, idempotency_keys")


def charge_body(token: str, amount_cents: int, reference: str) -> dict[str, Any]:
    return {"amount_cents": amount_cents, "currency": "EUR", "token": token,
            "reference": reference}


LEDGER_DATABASE = "psp_tests"
"""The psp tests' own ledger: the stack's psp (``running_services``) keeps ``psp``."""


def psp_env(settings: StackSettings, port: int) -> dict[str, str]:
    return {
        "CHOREO_DATABASE_URL": scratch_database(settings, LEDGER_DATABASE),
        "CHOREO_PSP_PORT": str(port),
        "CHOREO_PSP_SLOW_DELAY_S": str(SLOW_DELAY_S),
    }


def start_psp(registry: ProcessRegistry, name: str, env: Mapping[str, str]) -> str:
    """Start the psp and wait until /health answers; returns its base URL."""
    registry.stop(name)  # a leftover of an interrupted run, recognised by its pid file
    registry.start(name, [sys.executable, "-m", "choreo.services.psp"], env=env, cwd=REPO_ROOT)
    base_url = f"http://127.0.0.1:{env['CHOREO_PSP_PORT']}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if registry.running(name) is None:
            pytest.fail(f"{name} exited during start-up:\n{_tail(registry, name)}")
        try:
            if requests.get(f"{base_url}/health", timeout=1).status_code == 200:
                return base_url
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{name} not healthy after {STARTUP_TIMEOUT_S}s:\n{_tail(registry, name)}")


def _tail(registry: ProcessRegistry, name: str) -> str:
    log = registry.log_file(name)
    return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""


def retry_until_answered(psp: PspClient, key: str, token: str, reference: str) -> Charge:
    """What a caller does: retry PspUnavailable with the same key until there is an answer."""
    deadline = time.monotonic() + SLOW_DELAY_S + 10
    while True:
        try:
            return psp.charge(key, 1250, "EUR", token, reference)
        except PspUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
