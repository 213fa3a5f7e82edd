"""Fixtures for the payments tests: a scratch database and a psp of their own.

The psp is started with the psp tests' helpers (``start_psp``, ``psp_env``) and the
session's process registry fixture, but under its own name, port and ledger database: the psp
tests empty their ledger before each test and restart ``psp-test`` by name, which
would pull charges out from under these tests whenever both suites run at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from choreo.outbox.codec import EventCodec
from choreo.outbox.runner import apply_schema
from choreo.outbox.wire import OUTBOX_DDL
from choreo.schemas.catalog import SchemaCatalog
from choreo.services.payments.attempts import AttemptLog
from choreo.services.payments.psp_client import PspClient
from choreo.services.payments.store import SCHEMA
from choreo.stack.components import free_port
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings
from tests.payments.support import CONSUMER, EMITTED_EVENTS, Events, Harness, handlers_for
from tests.psp.support import Ledger, psp_env, start_psp
from tests.support import scratch_database

DATABASE = "payments_tests"
PSP_LEDGER = "payments_tests_psp"
PSP_NAME = "psp-payments-test"
PSP_TIMEOUT_S = 5.0
PSP_SLOW_DELAY_S = 2.0
"""tok_slow's delay here: long enough that a crash test acts while a charge is in flight."""


@pytest.fixture(scope="session")
def payments_dsn(running_stack: StackSettings) -> str:
    dsn = scratch_database(running_stack, DATABASE)
    apply_schema(dsn, OUTBOX_DDL, SCHEMA)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(EMITTED_EVENTS)
    return dsn


@pytest.fixture(scope="session")
def psp_ledger(running_stack: StackSettings) -> Ledger:
    return Ledger(scratch_database(running_stack, PSP_LEDGER))


@pytest.fixture(scope="session")
def payments_psp_url(running_stack: StackSettings, psp_registry: ProcessRegistry,
                     psp_ledger: Ledger) -> Iterator[str]:
    env = {**psp_env(running_stack, free_port()), "CHOREO_DATABASE_URL": psp_ledger.dsn,
           "CHOREO_PSP_SLOW_DELAY_S": str(PSP_SLOW_DELAY_S)}
    try:
        yield start_psp(psp_registry, PSP_NAME, env)
    finally:
        psp_registry.stop(PSP_NAME)


@pytest.fixture(scope="session")
def events() -> Events:
    return Events(EventCodec(SchemaCatalog.load()))


@pytest.fixture
def psp(payments_psp_url: str, psp_ledger: Ledger) -> Iterator[PspClient]:
    """A client of a psp whose ledger is empty, so its totals are this test's alone."""
    psp_ledger.truncate()
    with PspClient(payments_psp_url, PSP_TIMEOUT_S) as client:
        yield client


@pytest.fixture
def harness(payments_dsn: str, psp: PspClient) -> Iterator[Harness]:
    """Handlers on a connection to an emptied payments database, with a real psp."""
    with psycopg.connect(payments_dsn, autocommit=True) as conn, \
            AttemptLog(payments_dsn) as attempt_log:
        conn.execute("TRUNCATE payments, charge_attempts, emitted_events")
        conn.execute("DELETE FROM inbox WHERE consumer = %s", (CONSUMER,))
        yield Harness(conn, handlers_for(psp, attempt_log), psp)

