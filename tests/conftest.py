"""Session fixtures: one real embedded stack for the whole test run, always stopped.

The test stack has its own state directory and ports, so it never collides with a
stack a developer started with ``choreo up``. Set ``CHOREO_TEST_KEEP_STACK=1`` to leave
it running between runs while iterating (``choreo down`` with the same
``CHOREO_STATE_DIR`` stops it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from infra import stack
from infra.settings import REPO_ROOT, StackSettings

TEST_ENV = {
    "CHOREO_STATE_DIR": str(REPO_ROOT / ".choreo-test"),
    "CHOREO_ARTIFACT_CACHE": str(REPO_ROOT / ".choreo" / "artifacts"),
    "CHOREO_POSTGRES_PORT": "25432",
    "CHOREO_REDIS_PORT": "26379",
    "CHOREO_KAFKA_PORT": "29092",
    "CHOREO_CONNECT_PORT": "28083",
    "CHOREO_ORDERS_PORT": "28080",
    "CHOREO_PSP_PORT": "28090",
    "CHOREO_INVENTORY_METRICS_PORT": "28081",
    "CHOREO_PAYMENTS_METRICS_PORT": "28082",
    "CHOREO_ORDERS_WORKER_METRICS_PORT": "28084",
    "CHOREO_CDC_POLL_INTERVAL_MS": "10",
}


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    return StackSettings.from_env({**os.environ, **TEST_ENV})


@pytest.fixture(scope="session")
def running_stack(stack_settings: StackSettings) -> Iterator[StackSettings]:
    """PostgreSQL, Redis, the broker and Connect with the outbox connectors RUNNING."""
    try:
        stack.up(stack_settings, report=lambda line: None, with_services=False)
        yield stack_settings
    finally:
        if os.environ.get("CHOREO_TEST_KEEP_STACK") != "1":
            stack.down(stack_settings, report=lambda line: None)


@pytest.fixture(scope="session")
def running_services(running_stack: StackSettings) -> StackSettings:
    """The saga's services on top of the stack (stopped with it at the end of the session)."""
    stack.up(running_stack, report=lambda line: None)
    return running_stack
