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

from choreo.stack import launcher
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import REPO_ROOT, StackSettings


def ports_shifted_by(offset: int) -> dict[str, str]:
    """Every port of the stack, moved by ``offset`` from its default."""
    return {variable: str(port + offset)
            for variable, port in StackSettings.port_variables().items()}


PORT_OFFSET = int(os.environ.get("CHOREO_TEST_PORT_OFFSET", "10000"))
"""Tests run their own stack 10000 ports above the defaults (25432-29092), so they never
meet a stack a developer runs; a second checkout can test at the same time with another
offset. Keep every port below the kernel's ephemeral range (32768 and up), where client
connections' source ports would now and then occupy it."""

# tok_slow's capture must come after a 1 s deadline's cancellation, which the deadline job
# (every second) makes up to 2 s after placing: 3 s keeps a second in between on a busy
# machine, where the default 2 s left a tenth of one in the worst tick phase. Not a stack
# setting, so it reaches the test stack's psp through the environment every process the
# tests start inherits (the psp and payments tests set their own).
os.environ.setdefault("CHOREO_PSP_SLOW_DELAY_S", "3")

TEST_ENV = {
    "CHOREO_STATE_DIR": str(REPO_ROOT / ".choreo-test"),
    "CHOREO_ARTIFACT_CACHE": str(REPO_ROOT / ".choreo" / "artifacts"),
    "CHOREO_CDC_POLL_INTERVAL_MS": "10",
    "CHOREO_BROKERS": "1",  # whatever a developer's environment says: the suite's stack
    # Every trace kept, so a test that reads one late finds it; the sampling itself is
    # tests/outbox/test_tail_sampling.py's.
    "CHOREO_TRACE_KEEP_SHARE": "1",
    # CHOREO_TEST_RELAY=polling runs the suites with the polling relay instead of Debezium.
    "CHOREO_RELAY": os.environ.get("CHOREO_TEST_RELAY", "cdc"),
    **ports_shifted_by(PORT_OFFSET),
}


WHOLE_STACK = {"running_stack", "running_services"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test's marker must say what it starts: ``-m "not stack"`` promises no broker and
    no Connect, so a test that needs them unmarked (or marked ``postgres``) is refused."""
    for item in items:
        needs_stack = bool(WHOLE_STACK & set(getattr(item, "fixturenames", ())))
        if needs_stack and item.get_closest_marker("stack") is None:
            raise pytest.UsageError(f"{item.nodeid} starts the whole stack: mark it 'stack'")
        if needs_stack and item.get_closest_marker("postgres") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked 'postgres' but starts the whole"
                                    " stack: mark it 'stack' only")


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    return StackSettings.from_env({**os.environ, **TEST_ENV})


def stopped_at_the_end(settings: StackSettings) -> None:
    if os.environ.get("CHOREO_TEST_KEEP_STACK") != "1":
        launcher.down(settings, report=lambda line: None)


@pytest.fixture(scope="session")
def running_postgres(stack_settings: StackSettings) -> Iterator[StackSettings]:
    """The test stack's PostgreSQL alone (or as part of the whole stack, if that runs too),
    migrated: what the ``postgres``-marked tests need, in about a second."""
    try:
        launcher.up_database(stack_settings, report=lambda line: None)
        yield stack_settings
    finally:
        stopped_at_the_end(stack_settings)


@pytest.fixture(scope="session")
def running_stack(stack_settings: StackSettings) -> Iterator[StackSettings]:
    """PostgreSQL, Redis, the broker and Connect with the outbox connectors RUNNING."""
    try:
        launcher.up(stack_settings, report=lambda line: None, with_services=False)
        yield stack_settings
    finally:
        stopped_at_the_end(stack_settings)


@pytest.fixture(scope="session")
def running_services(running_stack: StackSettings) -> StackSettings:
    """The saga's services on top of the stack (stopped with it at the end of the session)."""
    launcher.up(running_stack, report=lambda line: None)
    return running_stack


@pytest.fixture(scope="session")
def psp_registry(running_stack: StackSettings) -> ProcessRegistry:
    """Where the psp and payments suites record the psp processes of their own, by pid."""
    return ProcessRegistry(running_stack.pid_dir, running_stack.log_dir)
