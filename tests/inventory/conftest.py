"""Fixtures for the inventory tests: a scratch database of their own on the test stack.

``inventory_tests`` holds the outbox tables and the inventory's tables, so these tests
never touch the database a running inventory service (or another test module) uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from choreo.outbox.runner import apply_schema
from choreo.outbox.wire import OUTBOX_DDL
from choreo.services.inventory.store import SCHEMA_SQL
from choreo.stack.settings import StackSettings
from tests.inventory.support import reset
from tests.support import scratch_database

DATABASE = "inventory_tests"


@pytest.fixture(scope="session")
def inventory_dsn(running_postgres: StackSettings) -> str:
    dsn = scratch_database(running_postgres, DATABASE)
    apply_schema(dsn, OUTBOX_DDL, SCHEMA_SQL)
    return dsn


@pytest.fixture(scope="session")
def session_conn(inventory_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """One autocommit connection, like the runtime's; hypothesis tests reset it per example."""
    with psycopg.connect(inventory_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def conn(session_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The session connection over empty inventory tables."""
    reset(session_conn)
    return session_conn
