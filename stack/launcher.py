"""Bring the embedded stack up and down, and say how it is doing.

``up`` is idempotent: components already running (by their pid files) are left alone,
so a second ``choreo up`` on a running stack changes nothing and says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests

from choreo.outbox import span_store
from choreo.outbox.deadletter import dead_letter_topic
from choreo.outbox.kafka import ensure_topics
from choreo.outbox.wire import OUTBOX_DDL
from choreo.schemas.catalog import SchemaCatalog
from choreo.stack import drain, manifest
from choreo.stack.broker import broker_components, log_is_formatted, node_component
from choreo.stack.components import (
    Component,
    class_archive_dump,
    connect_component,
    create_service_databases,
    port_is_free,
    postgres_component,
    redis_component,
)
from choreo.stack.connectors import deploy_outbox_connectors, heartbeat_topic
from choreo.stack.errors import ConfigError, StartError
from choreo.stack.install import ensure_installed
from choreo.stack.links import links_component
from choreo.stack.processes import ProcessRegistry, resident_bytes
from choreo.stack.recovery import log_needs_window, republish_lost_log, stop_connect_for_new_log
from choreo.stack.relays import relay_components, retire_cdc, retire_polling
from choreo.stack.services import consumer_processes, service_components
from choreo.stack.settings import REPO_ROOT, TELEMETRY_DATABASE, StackSettings
from choreo.stack.slots import ensure_outbox_slots
from choreo.stack.supervision import (
    SUPERVISOR,
    ProcessRecord,
    SupervisorState,
    settings_env,
    shape_changes,
    state_file,
)

Report = Callable[[str], None]
DRAIN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
CONNECT_STOP_TIMEOUT_S = 30.0
"""Connect commits its source offsets while it stops: give it time rather than SIGKILL."""


def infrastructure(settings: StackSettings) -> list[Component]:
    """The servers in start order, then the polling relays; ``down`` stops them in reverse."""
    return [
        postgres_component(settings),
        redis_component(settings),
        *([links_component(settings)] if settings.links else []),
        *broker_components(settings),
        connect_component(settings),
        *relay_components(settings),
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


PORT_RELEASE_S = 10.0
"""How long a component we started and that just died may still hold its port: the
kernel frees a killed process's sockets only once its last thread is gone."""


def port_freed(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not port_is_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def default_port_setting(component: Component) -> str:
    return f"CHOREO_{component.name.upper().replace('-', '_')}_PORT"


def launch(component: Component, registry: ProcessRegistry) -> bool:
    """Start one component unless it runs already, without waiting for it to be healthy."""
    if registry.running(component.name):
        return False
    executable = component.command[0]
    if shutil.which(executable) is None:
        raise ConfigError(f"{component.name}: executable {executable!r} not found")
    if not port_freed(component.port, PORT_RELEASE_S if registry.get(component.name) else 0.0):
        raise ConfigError(
            f"port {component.port} for {component.name} is in use by another program;"
            f" choose another with {component.port_setting or default_port_setting(component)}"
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
    for database in manifest.databases(outbox=True):
        apply_sql(settings.database_dsn(database), OUTBOX_DDL)
    apply_sql(settings.database_dsn(TELEMETRY_DATABASE), span_store.SCHEMA)
    ensure_outbox_slots(settings, settings.databases_relayed_by("cdc"))


def event_topics() -> list[str]:
    """One topic per aggregate type, and one for each outbox connector's heartbeats,
    created up front with the intended partition count."""
    catalog = SchemaCatalog.load()
    heartbeats = [heartbeat_topic(database) for database in manifest.databases(outbox=True)]
    return sorted({catalog.latest(t).topic for t in catalog.event_types()}) + heartbeats


def service_topics() -> list[str]:
    """Every topic the stack needs, the events', the connectors' heartbeats and each
    consumer's dead letters: what a platform provisions where clients may not create
    topics (compose, Kubernetes)."""
    dead_letters = {dead_letter_topic(manifest.definition(p).name)
                    for p in manifest.MANIFEST if p.consumer}
    return [*event_topics(), *sorted(dead_letters)]


def start_broker(settings: StackSettings, registry: ProcessRegistry, report: Report) -> bool:
    """Start the broker's nodes that are not running, create the event topics, and give a
    new log the outbox window (``stack.recovery``): also when the broker already runs but
    an earlier republish did not finish. Returns whether a node was started."""
    if not log_is_formatted(settings) or log_needs_window(settings):
        stop_connect_for_new_log(registry, report)
    started = start_components(broker_components(settings), registry, settings, report)
    ensure_topics(settings.kafka, event_topics())
    publish_owed_window(settings, registry, report)
    return started


def restart_broker_node(settings: StackSettings, registry: ProcessRegistry, node: int,
                        report: Report) -> None:
    """The supervisor's restart of one node. On a log that is not new, the node only has
    to rejoin: the topics are there, and asking for them on a cluster busy taking the
    node back timed out (seen in a three-node storm), which made the supervisor kill the
    node it had just brought back, while the storm killed another: no quorum."""
    if log_is_formatted(settings) and not log_needs_window(settings):
        start_component(node_component(settings, node), registry, settings, report)
    else:
        start_broker(settings, registry, report)


def publish_owed_window(settings: StackSettings, registry: ProcessRegistry,
                        report: Report) -> None:
    """Before anything may publish into the broker's log: the window of a new log, if it
    is still owed (an earlier republish failed or was cut short)."""
    if log_needs_window(settings):
        republish_lost_log(settings, registry, report)


def start_stack(settings: StackSettings, report: Report, with_services: bool = True) -> bool:
    """Start what is not running, in order, from this process. Returns whether anything started.

    The supervisor calls this to become the parent of the stack; tests and ``choreo up
    --no-supervisor`` call it directly.
    """
    registry = registry_for(settings)
    started_any = False
    for component in infrastructure(settings):
        if component.name.startswith("broker-"):
            continue  # started with node 1, all at once: a quorum needs most of them
        if component.name == "broker":
            started_any |= start_broker(settings, registry, report)
            continue
        started_any |= start_component(component, registry, settings, report)
        if component.name == "postgres":
            migrate(settings)
    started_any |= retire_polling(settings, registry, report)
    started_any |= retire_cdc(settings, report)
    started_any |= deploy_outbox_connectors(settings, settings.databases_relayed_by("cdc"),
                                            report)
    start_class_archive_dump(settings, registry)
    if with_services:
        started_any |= start_components(service_components(settings), registry, settings,
                                        report)
    return started_any


def up(settings: StackSettings, report: Report = print, with_services: bool = True,
       supervised: bool = False) -> bool:
    """Install what is missing and start what is not running. Returns whether anything started.

    ``with_services=False`` brings up only the infrastructure (what most tests need).
    ``supervised`` starts the supervisor, which then starts the stack (``choreo up`` does).
    While a supervisor runs, it alone starts processes: ``up`` then asks it to retry
    what it gave up on and waits, so two launchers never race to restart one process.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_installed(settings.artifact_dir, report)
    registry = registry_for(settings)
    if supervised or registry.running(SUPERVISOR):
        started_any = supervisor_up(settings, registry, report, with_services)
    else:
        started_any = start_stack(settings, report, with_services)
    if not started_any:
        report(f"choreo is already running (state in {settings.state_dir}); nothing to do")
    return started_any


def up_database(settings: StackSettings, report: Report = print) -> bool:
    """PostgreSQL alone, its databases and tables migrated: enough for the tests that drive
    handlers and the consumer runtime without a broker (``outbox.testing``), which then
    start in a second instead of waiting for the broker and Connect. Returns whether it
    started; ``up`` later adds the rest around it, ``down`` stops it like the rest."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_installed(settings.artifact_dir, report)
    started = start_component(postgres_component(settings), registry_for(settings), settings,
                              report)
    migrate(settings)
    return started


def start_class_archive_dump(settings: StackSettings, registry: ProcessRegistry) -> None:
    """Once a worker without a class-data archive runs, build the archive beside it."""
    dump = class_archive_dump(settings)
    if dump is not None:
        launch(dump, registry)


def supervised_names(settings: StackSettings, with_services: bool) -> list[str]:
    components = infrastructure(settings) + (service_components(settings)
                                             if with_services else [])
    return [component.name for component in components]


def supervisor_up(settings: StackSettings, registry: ProcessRegistry, report: Report,
                  with_services: bool) -> bool:
    """Start the supervisor (it starts the stack), or nudge a running one; relay its log."""
    log = registry.log_file(SUPERVISOR)
    offset = log.stat().st_size if log.exists() else 0
    tracked = registry.running(SUPERVISOR)
    if tracked is None:
        state_file(settings).unlink(missing_ok=True)
        command = [sys.executable, "-m", "choreo.stack.supervisor"]
        registry.start(SUPERVISOR, command + ([] if with_services else ["--infra-only"]),
                       env=settings_env(settings), cwd=REPO_ROOT)
        report(f"{SUPERVISOR:<13} started; it starts the stack and restarts what exits")
        follow_supervisor(settings, registry, log, offset, report, lambda: True)
        return True
    names = supervised_names(settings, with_services)
    state = SupervisorState.load(state_file(settings))
    changes = shape_changes(state, settings) if state else []
    if changes:
        raise ConfigError(f"the running supervisor was started with other settings"
                         f" ({'; '.join(changes)}); `choreo down` first, then `choreo up`"
                         " with the new ones")
    unwatched = [name for name in names if state and name not in state.processes]
    if unwatched:
        raise ConfigError(f"the running supervisor does not watch {', '.join(unwatched)}"
                         " (it was started for the infrastructure only, or with fewer"
                         " replicas); `choreo down` first")
    if (state is not None and state.phase == "supervising" and all_healthy(settings, names)
            and not any(record.gave_up for record in state.processes.values())):
        return False
    os.kill(tracked.pid, signal.SIGHUP)  # retry what it gave up on
    follow_supervisor(settings, registry, log, offset, report,
                      lambda: all_healthy(settings, names))
    return True


def all_healthy(settings: StackSettings, names: list[str]) -> bool:
    registry = registry_for(settings)
    by_name = {c.name: c for c in infrastructure(settings) + service_components(settings)}
    return all(registry.running(name) and by_name[name].healthy() for name in names)


def follow_supervisor(settings: StackSettings, registry: ProcessRegistry, log: Path,
                      offset: int, report: Report, done: Callable[[], bool]) -> None:
    """Relay the supervisor's log lines until it supervises and ``done()``, or it failed."""
    timeout_s = 3 * settings.start_timeout_s
    deadline = time.monotonic() + timeout_s
    while True:
        offset = relay(log, offset, report)
        state = SupervisorState.load(state_file(settings))
        phase = state.phase if state else "starting"
        if phase == "failed":
            message = state.error if state and state.error else "supervisor failed"
            raise (ConfigError if state and state.config_error else StartError)(message)
        if registry.running(SUPERVISOR) is None:
            relay(log, offset, report)
            raise StartError(f"the supervisor exited; see {log}:\n{tail(log)}")
        if phase == "supervising" and done():
            return
        if time.monotonic() > deadline:
            raise StartError(f"the stack is not up after {timeout_s:.0f}s; see {log}")
        time.sleep(0.2)


def relay(log: Path, offset: int, report: Report) -> int:
    """Report the complete lines written to ``log`` since ``offset``, without timestamps."""
    try:
        with log.open("rb") as stream:
            stream.seek(offset)
            chunk = stream.read()
    except FileNotFoundError:
        return offset
    complete = chunk[:chunk.rfind(b"\n") + 1]
    for line in complete.decode(errors="replace").splitlines():
        report(line.split(" ", 1)[-1])
    return offset + len(complete)


def stop(registry: ProcessRegistry, name: str, report: Report, timeout_s: float = 20.0) -> None:
    if registry.get(name) is not None:
        started = time.monotonic()
        stopped = registry.stop(name, timeout_s)
        report(f"{name:<13} stopped in {time.monotonic() - started:.1f}s" if stopped
               else f"{name:<13} was not running")


def down(settings: StackSettings, report: Report = print,
         drain_timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Stop every process this state directory started, by pid.

    The supervisor goes first, so nothing is restarted while stopping. Then the intake
    (orders-api); the consumers catch up on what is in the topics, Connect stops with
    SIGTERM, which flushes its offsets, and the consumers catch up once more on what it
    published last; then the rest, newest first. The catching up is a courtesy, bounded
    by ``drain_timeout_s``: the sagas in flight settle now rather than after their
    deadline ran out during the downtime. Nothing depends on it: the broker keeps its log
    on disk, and each consumer goes on from its own position at the next ``up``.
    """
    registry = registry_for(settings)
    stop(registry, SUPERVISOR, report)
    stop(registry, "orders-api", report)
    consumers = [name for name in consumer_processes(settings) if registry.running(name)]
    if consumers and registry.running("broker"):
        drain.drain(settings, consumers, report, drain_timeout_s)
        for name in [n for n in registry.names() if n.startswith("relay-")]:
            stop(registry, name, report)
        if registry.running("connect"):
            stop(registry, "connect", report, timeout_s=CONNECT_STOP_TIMEOUT_S)
            drain.drain(settings, consumers, report, drain_timeout_s)
    known = [c.name for c in infrastructure(settings) + service_components(settings)]
    order = [n for n in registry.names() if n not in known] + list(reversed(known))
    nodes = [c.name for c in broker_components(settings)]
    for name in order:
        if name == nodes[-1]:
            stop_together(registry, nodes, report)
        elif name not in nodes:
            stop(registry, name, report,
                 CONNECT_STOP_TIMEOUT_S if name == "connect" else STOP_TIMEOUT_S)


def stop_together(registry: ProcessRegistry, names: list[str], report: Report) -> None:
    """The broker's nodes all at once: one by one, the last would wait out its timeout,
    its controlled shutdown needing a controller quorum that left before it."""
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda name: stop(registry, name, report), names))  # raises what it raised


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    port: int
    pid: int | None
    healthy: bool
    rss_bytes: int
    restarts: int = 0
    last_exit: str | None = None
    gave_up: bool = False


def status(settings: StackSettings) -> list[ComponentStatus]:
    registry = registry_for(settings)
    supervision = supervisor_state(settings)
    records = supervision.processes if supervision else {}
    rows = []
    for component in infrastructure(settings) + service_components(settings):
        tracked = registry.running(component.name)
        record = records.get(component.name, ProcessRecord())
        rows.append(ComponentStatus(
            component.name,
            component.port,
            tracked.pid if tracked else None,
            bool(tracked) and component.healthy(),
            resident_bytes(tracked.pid) if tracked else 0,
            record.restarts,
            record.last_exit,
            record.gave_up,
        ))
    return rows


def component_pids(settings: StackSettings) -> dict[str, int]:
    """The pid of every component running now, by name (what ``stack.cpu`` measures)."""
    registry = registry_for(settings)
    pids = {}
    for component in infrastructure(settings) + service_components(settings):
        tracked = registry.running(component.name)
        if tracked is not None:
            pids[component.name] = tracked.pid
    return pids


def wait_shared(settings: StackSettings, timeout_s: float = 60.0) -> None:
    """Until every consumer process owns partitions: replicas started beside running
    ones get their share at the others' next rebalance (each runs one a second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        owned = {}
        for name in consumer_processes(settings):
            try:
                owned[name] = drain.read(drain.metrics_port(settings, name)).partitions
            except (requests.RequestException, ValueError):
                owned[name] = 0
        if all(owned.values()):
            return
        if time.monotonic() > deadline:
            raise StartError(f"partitions not shared after {timeout_s:.0f}s: {owned}")
        time.sleep(0.2)


def supervisor_state(settings: StackSettings) -> SupervisorState | None:
    """What the running supervisor last wrote; None when no supervisor runs."""
    if registry_for(settings).running(SUPERVISOR) is None:
        return None
    return SupervisorState.load(state_file(settings))


def stop_supervisor(settings: StackSettings, report: Report = print) -> None:
    """Leave the stack running, unsupervised (what a test that supervised for a while needs)."""
    stop(registry_for(settings), SUPERVISOR, report)
