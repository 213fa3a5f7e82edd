from __future__ import annotations

import psycopg
import pytest

from infra.settings import StackSettings
from tests.outbox.probe import prepare

DATABASE = "outbox_tests"


@pytest.fixture(scope="session")
def probe_database(running_stack: StackSettings) -> str:
    """A database of its own for consumer-side state (inbox, dead letters, effects)."""
    with psycopg.connect(running_stack.database_dsn("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (DATABASE,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = running_stack.database_dsn(DATABASE)
    prepare(url)
    return url
