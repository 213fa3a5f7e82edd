"""A notifier (the message provider stand-in) of the notification tests' own: the real
``python -m choreo.services.notifier`` process, on its own port and ledger database,
recorded and stopped by pid."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from choreo.stack.components import free_port
from choreo.stack.settings import StackSettings
from tests.support import scratch_database, started_process

SLOW_DELAY_S = 1.5
"""+slow's delay here: longer than the client's timeout in these tests (1 s)."""


@pytest.fixture(scope="package")
def ledger_dsn(running_postgres: StackSettings) -> str:
    return scratch_database(running_postgres, "notifier_tests")


@pytest.fixture(scope="package")
def notifier_url(running_postgres: StackSettings, ledger_dsn: str) -> Iterator[str]:
    port = free_port()
    yield from started_process(running_postgres, "notifier-test", ["choreo.services.notifier"],
                               port, {"CHOREO_DATABASE_URL": ledger_dsn,
                                      "CHOREO_NOTIFIER_PORT": str(port),
                                      "CHOREO_NOTIFIER_SLOW_DELAY_S": str(SLOW_DELAY_S)})


def messages(ledger_dsn: str, reference: str) -> list[tuple[str, str, int]]:
    """(idempotency key, recipient, requests) of every message about ``reference``."""
    with psycopg.connect(ledger_dsn) as conn:
        return conn.execute("SELECT idempotency_key, recipient, requests FROM messages"
                            " WHERE reference = %s ORDER BY id", (reference,)).fetchall()
