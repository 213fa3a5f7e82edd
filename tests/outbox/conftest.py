from __future__ import annotations

import pytest

from choreo.stack.settings import StackSettings
from tests.outbox.probe import prepare
from tests.support import scratch_database

DATABASE = "outbox_tests"


@pytest.fixture(scope="session")
def probe_database(running_postgres: StackSettings) -> str:
    """A database of its own for consumer-side state (inbox, dead letters, effects)."""
    url = scratch_database(running_postgres, DATABASE)
    prepare(url)
    return url
