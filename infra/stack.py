"""Bring the embedded stack up and down, and say how it is doing.

``up`` is idempotent: components already running (by their pid files) are left alone,
so a second ``choreo up`` on a running stack changes nothing and says so.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from infra.components import (
    Component,
    broker_component,
    class_archive_dump,
    connect_component,
    create_service_databases,
    port_is_free,
    postgres_component,
    redis_component,
)
from infra.connectors import deploy_outbox_connectors
from infra.errors import ConfigError, StartError
from infra.install import ensure_installed
from infra.processes import ProcessRegistry, resident_bytes
from infra.recovery import republish_lost_log, stop_connect_for_new_log
from infra.services import service_components
from infra.settings import OUTBOX_DATABASES, REPO_ROOT, StackSettings
from infra.slots import ensure_outbox_slots
from outbox.kafka import ensure_topics
from schemas.catalog import SchemaCatalog

Report = Callable[[str], None]
OUTBOX_SCHEMA = REPO_ROOT / "outbox" / "schema.sql"


def infrastructure(settings: StackSettings) -> list[Component]:
    """The servers in start order; ``down`` stops them in reverse."""
    return [
        postgres_component(settings),
        redis_component(settings),
        broker_component(settings),
        connect_component(settings),
    ]


def registry_for(settings: StackSettings) -> ProcessRegistry:
    return ProcessRegistry(settings.pid_dir, settings.log_dir)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"


def wait_healthy(component: Component, registry: ProcessRegistry, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if component.healthy():
            return
        if registry.running(component.name) is None:
            log = registry.log_file(component.name)
            raise StartError(
                f"{component.name} exited during start-up; see {log}:\n{tail(log)}"
            )
        time.sleep(0.2)
    log = registry.log_file(component.name)
    raise StartError(
        f"{component.name} not healthy on port {component.port} after {timeout_s:.0f}s;"
        f" see {log}:\n{tail(log)}"
    )


def launch(component: Component, registry: ProcessRegistry) -> bool:
    """Start one component unless it runs already, without waiting for it to be healthy."""
    if registry.running(component.name):
        return False
    executable = component.command[0]
    if shutil.which(executable) is None:
        raise ConfigError(f"{component.name}: executable {executable!r} not found")
    if not port_is_free(component.port):
        raise ConfigError(
            f"port {component.port} for {component.name} is in use by another program;"
            f" choose another with CHOREO_{component.name.upper().replace('-', '_')}_PORT"
            " or free it"
        )
    if component.prepare:
        component.prepare()
    registry.start(component.name, component.command, env=component.env, user=component.user,
                   stop_signal=component.stop_signal)
    return True


def start_components(components: list[Component], registry: ProcessRegistry,
                     settings: StackSettings, report: Report) -> bool:
    """Launch all, then wait for each: independent processes start side by side."""
    started = time.monotonic()
    launched = [c for c in components if launch(c, registry)]
    for component in launched:
        wait_healthy(component, registry, settings.start_timeout_s)
        report(f"{component.name:<13} up on 127.0.0.1:{component.port}"
               f" in {time.monotonic() - started:.1f}s")
    return bool(launched)


def start_component(
    component: Component, registry: ProcessRegistry, settings: StackSettings, report: Report
) -> bool:
    """Start one component and wait for it. Returns whether it was started."""
    return start_components([component], registry, settings, report)


def apply_sql(dsn: str, script: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(script.read_text().encode())


def migrate(settings: StackSettings) -> None:
    """Create the databases, the outbox/inbox tables and the replication slots (idempotent).

    The slots come before any service starts, so no commit precedes its slot.
    """
    create_service_databases(settings)
    for database in OUTBOX_DATABASES:
        apply_sql(settings.database_dsn(database), OUTBOX_SCHEMA)
    ensure_outbox_slots(settings)


def event_topics() -> list[str]:
    """One topic per aggregate type, created up front with the intended partition count."""
    catalog = SchemaCatalog.load()
    return sorted({catalog.latest(t).topic for t in catalog.event_types()})


def up(settings: StackSettings, report: Report = print, with_services: bool = True) -> bool:
    """Install what is missing and start what is not running. Returns whether anything started.

    ``with_services=False`` brings up only the infrastructure (what most tests need).
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_installed(settings.artifact_dir, report)
    registry = registry_for(settings)
    started_any = False
    for component in infrastructure(settings):
        if component.name == "broker" and registry.running("broker") is None:
            stop_connect_for_new_log(registry, report)
        started = start_component(component, registry, settings, report)
        started_any |= started
        if component.name == "postgres":
            migrate(settings)
        if component.name == "broker":
            ensure_topics(settings.kafka_bootstrap, event_topics())
            if started:
                republish_lost_log(settings, registry, report)
    started_any |= deploy_outbox_connectors(settings, OUTBOX_DATABASES, report)
    start_class_archive_dump(settings, registry)
    if with_services:
        started_any |= start_components(service_components(settings), registry, settings,
                                        report)
    if not started_any:
        report(f"choreo is already running (state in {settings.state_dir}); nothing to do")
    return started_any


def start_class_archive_dump(settings: StackSettings, registry: ProcessRegistry) -> None:
    """Once a worker without a class-data archive runs, build the archive beside it."""
    dump = class_archive_dump(settings)
    if dump is not None:
        launch(dump, registry)


def down(settings: StackSettings, report: Report = print) -> None:
    """Stop every process this state directory started, newest first, by pid."""
    registry = registry_for(settings)
    known = [c.name for c in infrastructure(settings) + service_components(settings)]
    order = [n for n in registry.names() if n not in known] + list(reversed(known))
    for name in order:
        if registry.get(name) is None:
            continue
        report(f"{name:<10} {'stopped' if registry.stop(name) else 'was not running'}")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    port: int
    pid: int | None
    healthy: bool
    rss_bytes: int


def status(settings: StackSettings) -> list[ComponentStatus]:
    registry = registry_for(settings)
    rows = []
    for component in infrastructure(settings) + service_components(settings):
        tracked = registry.running(component.name)
        rows.append(ComponentStatus(
            component.name,
            component.port,
            tracked.pid if tracked else None,
            bool(tracked) and component.healthy(),
            resident_bytes(tracked.pid) if tracked else 0,
        ))
    return rows
