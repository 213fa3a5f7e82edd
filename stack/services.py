"""The saga's service processes as the launcher sees them: command, ports, health URL.

Each is a plain ``python -m services.<name>`` process, started and stopped by pid like
the servers under it, with the environment that tells it where the stack is. The web
console (``python -m console``) is started, supervised and stopped beside them; it is
named here only by its command, so nothing in the stack imports it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import requests

from stack.components import Component, quietly
from stack.settings import StackSettings
from stack.supervision import settings_env


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    args: tuple[str, ...]
    database: str
    port_field: str
    """The StackSettings field with the port its /health is served on."""


SERVICES = (
    ServiceSpec("psp", ("services.psp",), "psp", "psp_port"),
    ServiceSpec("inventory", ("services.inventory",), "inventory", "inventory_metrics_port"),
    ServiceSpec("payments", ("services.payments",), "payments", "payments_metrics_port"),
    ServiceSpec("orders-worker", ("services.orders", "worker"), "orders",
                "orders_worker_metrics_port"),
    ServiceSpec("orders-api", ("services.orders", "api"), "orders", "orders_port"),
)


def service_component(settings: StackSettings, spec: ServiceSpec) -> Component:
    port = getattr(settings, spec.port_field)
    health_url = f"http://127.0.0.1:{port}/health"

    def healthy() -> bool:
        return requests.get(health_url, timeout=2).status_code == 200

    return Component(spec.name, port, [sys.executable, "-m", *spec.args], quietly(healthy),
                     env={**settings.service_env(spec.database, port),
                          "OTEL_SERVICE_NAME": spec.name})


CONSOLE = "console"


def console_component(settings: StackSettings) -> Component:
    """The console reads every service's database, so it gets the whole stack's settings."""
    health_url = f"http://127.0.0.1:{settings.console_port}/health"

    def healthy() -> bool:
        return requests.get(health_url, timeout=2).status_code == 200

    return Component(CONSOLE, settings.console_port, [sys.executable, "-m", "console"],
                     quietly(healthy), env=settings_env(settings))


def service_components(settings: StackSettings) -> list[Component]:
    """The services, and the console after them (``down`` stops it first)."""
    return [service_component(settings, spec) for spec in SERVICES] + [
        console_component(settings)]
