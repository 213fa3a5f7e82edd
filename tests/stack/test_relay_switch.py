"""``CHOREO_RELAY`` changed between a ``down`` and the next ``up``, there and back:
cdc -> polling -> cdc for the orders database, every row published each time, and
Debezium RUNNING at the end.

The way back once failed for good: the standalone worker forgets its connectors when it
stops but keeps their offsets, so the ``up`` in polling mode found no connector to reset,
the slot was dropped, and the next ``up`` in cdc mode deployed a connector whose stored
LSN the new slot no longer had ("trying to read change stream starting at ... no longer
available"): FAILED, and nothing of the database published until someone deleted files.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from choreo.stack import launcher
from choreo.stack.connectors import ConnectClient, is_running
from choreo.stack.settings import REPO_ROOT, StackSettings
from tests.conftest import PORT_OFFSET, TEST_ENV, ports_shifted_by
from tests.support import collect, emit_confirmed, keyed

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900)]

STATE_DIR = REPO_ROOT / ".choreo-test-relay-switch"
PORT_SHIFT = -3000
"""Apart from the session's stack and every other stack of its own (-3500 ... -5000)."""


def settings_for(relay: str) -> StackSettings:
    return StackSettings.from_env({**os.environ, **TEST_ENV,
                                   **ports_shifted_by(PORT_OFFSET + PORT_SHIFT),
                                   "CHOREO_STATE_DIR": str(STATE_DIR),
                                   "CHOREO_RELAY": f"orders={relay}"})


def test_cdc_then_polling_then_cdc_across_downs_publishes_every_row() -> None:
    settings = settings_for("cdc")
    try:
        for relay in ("cdc", "polling", "cdc"):
            settings = settings_for(relay)
            launcher.up(settings, report=lambda line: None, with_services=False)
            run = f"switch-{relay}-{uuid.uuid4().hex[:6]}"
            emit_confirmed(settings, run, keys=1, per_key=3)
            published = collect(settings.kafka, "order.events", lambda found: len(found) >= 3,
                                accept=keyed(f"{run}-0"), timeout_s=60)
            assert len(published) == 3, f"{relay}: {len(published)} of 3 rows published"
            launcher.down(settings, report=lambda line: None)
        launcher.up(settings, report=lambda line: None, with_services=False)
        status = ConnectClient(settings.connect_url).status("orders-outbox")
        assert is_running(status), status
    finally:
        launcher.down(settings, report=lambda line: None)
        shutil.rmtree(STATE_DIR, ignore_errors=True)
