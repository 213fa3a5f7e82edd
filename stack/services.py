"""The saga's service processes as the launcher sees them: command, ports, health URL.

Each is a plain ``python -m choreo.services.<name>`` process, started and stopped by pid like
the servers under it, with the environment that tells it where the stack is. The web
console (``python -m choreo.console``) is started, supervised and stopped beside them; it is
named here only by its command, so nothing in the stack imports it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import requests

from choreo.stack import manifest
from choreo.stack.components import Component, quietly
from choreo.stack.links import routed
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings, replica_name, split_replica
from choreo.stack.supervision import settings_env


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    args: tuple[str, ...]
    database: str
    replica: int = 1
    """Which process of a consumer service this is; each past the first has a port of
    its own, derived from the service's (``StackSettings.replica_port``)."""

    @property
    def process(self) -> str:
        """The name in the pid registry: ``payments``, ``payments-2``, ..."""
        return replica_name(self.name, self.replica)

    def port(self, settings: StackSettings) -> int:
        return settings.replica_port(self.name, self.replica)


def specs() -> list[ServiceSpec]:
    """One per manifest entry, in its (start) order."""
    return [ServiceSpec(p.name, (p.module, *p.args), p.database) for p in manifest.MANIFEST]


def replicas(settings: StackSettings, service: str) -> int:
    """How many processes of ``service`` the stack has: what ``CHOREO_REPLICAS`` asks for,
    or more while more are recorded in the pid registry.

    Counting the registry too means a ``choreo status``, ``down``, ``restart`` or chaos
    run without the setting still sees (drains, stops, restarts) every replica that a
    ``choreo up --replicas`` started; a later ``up`` without it keeps them.
    """
    recorded = [split_replica(name) for name in
                ProcessRegistry(settings.pid_dir, settings.log_dir).names()]
    return max([settings.replica_count(service)]
               + [index for name, index in recorded if name == service])


def service_specs(settings: StackSettings) -> list[ServiceSpec]:
    """Every service process in start order, each consumer followed by its replicas."""
    consumers = manifest.consumers()
    return [replace(spec, replica=index) for spec in specs()
            for index in range(1, (replicas(settings, spec.name)
                                   if spec.name in consumers else 1) + 1)]


def spec_of(process: str) -> ServiceSpec:
    """The spec of one process by its registry name (``payments-2`` included)."""
    service, index = split_replica(process)
    return replace(next(spec for spec in specs() if spec.name == service), replica=index)


def consumer_processes(settings: StackSettings) -> list[str]:
    """The registry names of every consumer process: what ``down`` drains, what a chaos
    run waits to catch up."""
    consumers = manifest.consumers()
    return [spec.process for spec in service_specs(settings) if spec.name in consumers]


def service_component(settings: StackSettings, spec: ServiceSpec) -> Component:
    port = spec.port(settings)
    health_url = f"http://127.0.0.1:{port}/health"

    def healthy() -> bool:
        return requests.get(health_url, timeout=2).status_code == 200

    # Every replica shares its service's name in traces and its consumer name (and so
    # its partition leases, positions and inbox); only the port and the process differ.
    env = routed(settings, spec.name, settings.service_env(spec.database, port))
    return Component(spec.process, port, [sys.executable, "-m", *spec.args], quietly(healthy),
                     env={**env, "OTEL_SERVICE_NAME": spec.name})


CONSOLE = "console"


def console_component(settings: StackSettings) -> Component:
    """The console reads every service's database, so it gets the whole stack's settings."""
    health_url = f"http://127.0.0.1:{settings.console_port}/health"

    def healthy() -> bool:
        return requests.get(health_url, timeout=2).status_code == 200

    return Component(CONSOLE, settings.console_port, [sys.executable, "-m", "choreo.console"],
                     quietly(healthy), env=settings_env(settings))


def service_components(settings: StackSettings) -> list[Component]:
    """The services, and the console after them (``down`` stops it first)."""
    return [service_component(settings, spec) for spec in service_specs(settings)] + [
        console_component(settings)]
