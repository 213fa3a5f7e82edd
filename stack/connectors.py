"""Deploy Debezium connector templates through Kafka Connect's REST API.

Templates in ``connectors/`` are plain Debezium JSON with ``{{placeholders}}`` for what
differs per database and per machine. Deployment is ``PUT /connectors/NAME/config``,
which is idempotent; a worker that is still rebalancing answers 409 and is retried.
The embedded worker is standalone and forgets its connectors when it stops, so every
start of it is followed by a deployment (``stack.cdc.ensure_connect``).
Before deploying, the rendered config goes through Connect's own validation endpoint,
so a misspelt key or a bad value fails fast with the field named.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from choreo.outbox.wire import OUTBOX_TEMPLATE, render
from choreo.stack.errors import ConfigError, ConnectorError
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings


def template_values(settings: StackSettings, database: str) -> dict[str, str]:
    return {
        "database": database,
        "postgres_host": "127.0.0.1",
        "postgres_port": str(settings.postgres_port),
        "postgres_user": "postgres",
        "postgres_password": "",
        "poll_interval_ms": str(settings.cdc_poll_interval_ms),
    }


CONVERTER_SETTINGS = ("key.converter.", "value.converter.", "header.converter.")
"""Connect hands these to the converter; its validation does not list them."""


def heartbeat_topic(database: str) -> str:
    """The topic of Debezium's heartbeats for ``database``'s connector. They must reach a
    topic: Connect commits a source offset only for a record it produced, so heartbeats
    that a transform dropped never moved the offsets, and an idle database's slot pinned
    the cluster's WAL (docs/stack.md)."""
    config = json.loads(OUTBOX_TEMPLATE.read_text())["config"]
    topic = f"{config['heartbeat.topics.prefix']}.{config['topic.prefix']}"
    return topic.replace("{{database}}", database)


class ConnectClient:
    """The few Connect REST calls the launcher needs, with the retries Connect requires."""

    def __init__(self, base_url: str, timeout_s: float = 30.0,
                 alive: Callable[[], bool] = lambda: True) -> None:
        """``alive`` says whether the worker process still runs, where that is known (the
        embedded stack): a refused connection to a dead worker then fails at once."""
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.alive = alive

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Retry 409 (rebalance in progress) and connection errors for a bounded time,
        unless the worker is known to be dead: waiting the minute out for a worker killed
        mid-deployment held a supervised restart of Connect up for 60 s in a storm."""
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.request(
                    method, f"{self.base_url}{path}", timeout=self.timeout_s, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                if not self.alive():
                    raise ConnectorError(f"the Connect worker at {self.base_url} exited"
                                         f" ({method} {path})") from error
                if time.monotonic() > deadline:
                    raise
            else:
                if response.status_code != 409 or time.monotonic() > deadline:
                    return response
            time.sleep(0.5)

    def validate(self, name: str, config: Mapping[str, str], source: str) -> None:
        """Ask Connect which keys it knows and which values it rejects."""
        plugin = config["connector.class"].rsplit(".", 1)[-1]
        response = self._request(
            "PUT", f"/connector-plugins/{plugin}/config/validate", json={**config, "name": name}
        )
        if not response.ok:
            raise ConfigError(f"{source}: Connect rejected the config: {response.text[:2000]}")
        result = response.json()
        known = {entry["definition"]["name"] for entry in result["configs"]}
        # Debezium 3.6 lists some internal fields with no value at all (``"value": null``).
        problems = [
            f"{entry['value']['name']}: {'; '.join(entry['value']['errors'])}"
            for entry in result["configs"]
            if entry["value"] and entry["value"]["errors"]
        ]
        problems += [f"{key}: unknown field" for key in sorted(set(config) - known)
                     if not key.startswith(CONVERTER_SETTINGS)]
        if problems:
            raise ConfigError(f"{source}: invalid connector config:\n  " + "\n  ".join(problems))

    def put_config(self, name: str, config: Mapping[str, str]) -> None:
        response = self._request("PUT", f"/connectors/{name}/config", json=dict(config))
        if response.status_code not in (200, 201):
            raise ConnectorError(f"deploying {name} failed: {response.status_code} {response.text}")

    def config(self, name: str) -> dict[str, str] | None:
        response = self._request("GET", f"/connectors/{name}/config")
        return response.json() if response.ok else None

    def status(self, name: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/connectors/{name}/status")
        return response.json() if response.ok else None

    def restart(self, name: str) -> None:
        """Restart the connector and its tasks, but only the parts that are FAILED."""
        self._request("POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true")

    def delete(self, name: str) -> None:
        self._request("DELETE", f"/connectors/{name}")

    def wait_running(self, name: str, timeout_s: float = 60.0) -> int:
        """Wait until the connector and every task are RUNNING; returns the restarts it took.

        A FAILED task is not the end: right after PostgreSQL restarted, a task fails
        with "Couldn't obtain encoding for database ... Connection refused" and would
        stay FAILED forever. It is restarted with backoff (0.5 s doubling to 5 s);
        only the timeout ends the wait, with the last failure's stack trace.
        """
        deadline = time.monotonic() + timeout_s
        status: dict[str, Any] | None = None
        restarts, backoff, next_restart = 0, 0.5, 0.0
        while time.monotonic() < deadline:
            status = self.status(name)
            if status:
                if failed_parts(status):
                    if time.monotonic() >= next_restart:
                        self.restart(name)
                        restarts += 1
                        next_restart = time.monotonic() + backoff
                        backoff = min(backoff * 2, 5.0)
                elif is_running(status):
                    return restarts
            time.sleep(0.25)
        raise ConnectorError(
            f"{name} not RUNNING after {timeout_s:.0f}s ({restarts} restarts of failed"
            f" parts); last status:\n{describe(status)}"
        )

    def statuses(self, timeout_s: float = 5.0) -> dict[str, dict[str, Any]]:
        """Every connector's status in one call, without the launcher's long retries."""
        response = requests.get(f"{self.base_url}/connectors?expand=status", timeout=timeout_s)
        response.raise_for_status()
        return {name: entry["status"] for name, entry in response.json().items()}


def states_of(status: Mapping[str, Any]) -> list[str]:
    return [status["connector"]["state"]] + [task["state"] for task in status.get("tasks", [])]


def is_running(status: Mapping[str, Any] | None) -> bool:
    """The connector and every one of its tasks (at least one) RUNNING."""
    return bool(status and status.get("tasks")
                and all(state == "RUNNING" for state in states_of(status)))


def failed_parts(status: Mapping[str, Any]) -> list[str]:
    """``name`` for a FAILED connector, ``name/ID`` for each FAILED task."""
    name = status["name"]
    parts = [name] if status["connector"]["state"] == "FAILED" else []
    parts += [f"{name}/{task['id']}" for task in status.get("tasks", [])
              if task["state"] == "FAILED"]
    return parts


def describe(status: Mapping[str, Any] | None) -> str:
    if not status:
        return "(no status)"
    lines = [f"connector {status['connector']['state']}"]
    for task in status.get("tasks", []):
        lines.append(f"task {task['id']} {task['state']}")
        if task.get("trace"):
            lines.append(task["trace"][:4000])
    return "\n".join(lines)


def connector_statuses(settings: StackSettings) -> dict[str, dict[str, Any]] | None:
    """Every connector's status in one call; None when Connect does not answer."""
    try:
        return ConnectClient(settings.connect_url, timeout_s=5.0).statuses()
    except (requests.ConnectionError, requests.Timeout, requests.HTTPError):
        return None


def restart_failed_tasks(settings: StackSettings,
                         statuses: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Restart every FAILED connector or task; returns what was restarted (``name/ID``).

    For a supervisor to call every few seconds (with what ``connector_statuses`` read, or
    it reads them): a restart only where something failed. Connect not answering returns
    nothing: bringing the process back is the process supervisor's job (then
    ``stack.cdc.ensure_connect``).
    """
    statuses = connector_statuses(settings) if statuses is None else statuses
    if not statuses:
        return []
    client = ConnectClient(settings.connect_url, timeout_s=5.0)
    restarted = []
    for name, status in sorted(statuses.items()):
        failed = failed_parts(status)
        if failed:
            requests.post(
                f"{client.base_url}/connectors/{name}/restart",
                params={"includeTasks": "true", "onlyFailed": "true"}, timeout=5.0,
            )
            restarted += failed
    return restarted


def deploy_outbox_connectors(
    settings: StackSettings, databases: tuple[str, ...], report: Callable[[str], None],
    timeout_s: float = 60.0,
) -> bool:
    """The embedded stack's connectors, one per service database."""
    rendered = [render(OUTBOX_TEMPLATE, template_values(settings, db)) for db in databases]
    registry = ProcessRegistry(settings.pid_dir, settings.log_dir)
    client = ConnectClient(settings.connect_url,
                           alive=lambda: registry.running("connect") is not None)
    return deploy(client, rendered, report, timeout_s)


def deploy(client: ConnectClient, rendered: list[dict[str, Any]],
           report: Callable[[str], None], timeout_s: float = 60.0) -> bool:
    """Deploy what is missing or changed. Returns whether any connector was (re)deployed.

    A connector whose deployed config already equals the template is left untouched:
    PUT would restart its task for nothing.
    """
    changed = []
    for connector in rendered:
        name, config = connector["name"], connector["config"]
        if client.config(name) == {**config, "name": name}:
            continue
        client.validate(name, config, OUTBOX_TEMPLATE.name)
        changed.append(connector)
    for connector in changed:
        client.put_config(connector["name"], connector["config"])
    names = [connector["name"] for connector in rendered]
    unreported = {connector["name"] for connector in changed}
    deadline = time.monotonic() + timeout_s * len(names)
    waiting = names
    while waiting:
        for name in waiting:
            restarts = client.wait_running(name, max(deadline - time.monotonic(), 1.0))
            if name in unreported or restarts:
                again = f" after {restarts} restart(s) of failed tasks" if restarts else ""
                report(f"connector  {name} RUNNING{again}")
                unreported.discard(name)
        # One seen RUNNING can fail while the next is waited for (its own retry, right
        # after PostgreSQL came back): done only once all of them run at the same time.
        waiting = [name for name in names if not is_running(client.status(name))]
    return bool(changed)
