"""A Connect REST call to a worker known to be dead fails at once instead of retrying
for a minute (a supervised restart of Connect killed mid-deployment waited 60 s)."""

from __future__ import annotations

import time

import pytest

from choreo.stack.components import port_is_free
from choreo.stack.connectors import ConnectClient
from choreo.stack.errors import ConnectorError


def test_a_dead_worker_fails_the_call_at_once() -> None:
    closed = next(port for port in range(24980, 24990) if port_is_free(port))
    client = ConnectClient(f"http://127.0.0.1:{closed}", timeout_s=1.0, alive=lambda: False)
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="exited"):
        client.status("orders-outbox")
    assert time.monotonic() - started < 2.0
