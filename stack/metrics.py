"""The stack's own metrics, served by the supervisor: Connect's connectors and tasks, and
the restarts it carried out.

Connector state lives in Kafka Connect's REST API, which no service talks to; the
supervisor already reads it every few seconds to restart failed tasks, so it publishes
what it saw. A Connect that does not answer shows as nothing RUNNING.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, start_http_server

CONNECTOR_RUNNING = Gauge("choreo_connector_running", "1 while the connector is RUNNING",
                          ["connector"])
TASK_RUNNING = Gauge("choreo_connector_task_running", "1 while the connector task is RUNNING",
                     ["connector", "task"])
RESTARTS = Counter("choreo_supervisor_restarts_total",
                   "Processes the supervisor started again after they exited", ["process"])


def publish_connector_states(statuses: Mapping[str, Mapping[str, Any]] | None) -> None:
    """``statuses`` as ``GET /connectors?expand=status`` has them; None: Connect is down."""
    if statuses is None:
        for gauge in (CONNECTOR_RUNNING, TASK_RUNNING):
            for sample in list(gauge.collect()[0].samples):
                gauge.labels(**sample.labels).set(0)
        return
    for name, status in statuses.items():
        CONNECTOR_RUNNING.labels(name).set(status["connector"]["state"] == "RUNNING")
        for task in status.get("tasks", []):
            TASK_RUNNING.labels(name, str(task["id"])).set(task["state"] == "RUNNING")


def serve(port: int, host: str = "127.0.0.1") -> None:
    """``/metrics`` in a daemon thread; on loopback unless a container must be scraped."""
    start_http_server(port, addr=host)
