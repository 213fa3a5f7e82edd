"""Rolling restart: each service in turn, drained, started again, consuming, then the next.

One process at a time: SIGTERM to its recorded pid (a consumer finishes the event in
flight, commits, saves its positions and closes the session that holds its partition
leases; an HTTP server finishes its requests), a wait for it to exit on its own, a start
with the same command and environment, and a wait until it is back: answering its
``/health`` and, for a consumer, consuming again (it counted an event, or it has no lag
for a moment). Only then the next one. A process that does not exit within the drain
bound is SIGKILLed and the restart fails; so does one that is not back within its bound.

When a supervisor runs, it is the parent of every process: it alone starts them, and only
it can learn their exit status. So ``restart`` does not signal anything then: it writes a
request (``restarts/<name>.request.json`` in the state directory, with the pid it means)
and the supervisor's loop does the same stop and start itself, at once and without
backoff, not counted as an exit, and writes the outcome beside it. There is never a
moment when both could start the process. Without a supervisor this module does it.

The infrastructure (PostgreSQL, Redis, the broker, Connect) is left out: each runs as a
single instance (or, for the broker, nodes the supervisor brings back one by one), so
restarting one is an outage of everything that uses it, not a rolling restart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from choreo.stack import drain, launcher, manifest
from choreo.stack.components import Component
from choreo.stack.errors import ConfigError, StackError
from choreo.stack.processes import ProcessRegistry, describe_exit, exit_status
from choreo.stack.services import CONSOLE, service_components
from choreo.stack.settings import StackSettings, is_consumer, split_replica
from choreo.stack.supervision import SUPERVISOR


def order() -> tuple[str, ...]:
    """``--all``: the manifest's order (the psp first, as payments retries it; the
    consumers, each replica after the first, one at a time: its partitions move to the
    others while it drains; the intake, whose clients retry with their Idempotency-Key),
    then the console (nobody depends on it)."""
    return (*manifest.names(), CONSOLE)
INFRASTRUCTURE = ("postgres", "redis", "broker", "connect")
DRAIN_TIMEOUT_S = 20.0
"""From SIGTERM to the exit; past it the process is SIGKILLed and the restart failed."""
BACK_TIMEOUT_S = 60.0
"""From the start to healthy and consuming again."""
IDLE_CONSUMING_S = 1.0
"""A consumer with nothing to read counts as consuming once it has had no lag this long."""
POLL_S = 0.1

Report = Callable[[str], None]


class RestartError(StackError):
    """A process did not drain or did not come back; the message names it and its log."""


@dataclass(frozen=True)
class Cycle:
    """What stopping and starting one process did (the supervisor's answer, too)."""

    name: str
    old_pid: int
    new_pid: int | None
    exit: str
    """``code 0`` for a drained stop; ``signal SIGKILL`` when it had to be killed;
    ``unknown`` when this process is not its parent."""
    stopped_s: float
    error: str | None = None


@dataclass(frozen=True)
class Restarted:
    cycle: Cycle
    took_s: float
    """From SIGTERM to answering (and consuming, for a consumer) again: its stall."""


def plan(settings: StackSettings, names: Sequence[str], every: bool) -> list[str]:
    """The processes to restart, in order; unknown and infrastructure names refused."""
    known = {component.name for component in service_components(settings)}
    for name in names:
        if name in INFRASTRUCTURE or name.startswith("relay-"):
            raise ConfigError(f"{name} is infrastructure, a single instance: restarting it"
                              " is an outage, not a rolling restart (see docs/stack.md)")
        if name not in known:
            raise ConfigError(f"no service {name!r}; choose from {', '.join(order())}")
    if every:  # each service followed by its replicas
        return sorted(known, key=lambda name: (order().index(split_replica(name)[0]),
                                               split_replica(name)[1]))
    if not names:
        raise ConfigError("name the services to restart, or --all")
    return list(dict.fromkeys(names))


def component_named(settings: StackSettings, name: str) -> Component:
    return next(c for c in service_components(settings) if c.name == name)


def cycle(component: Component, registry: ProcessRegistry, settings: StackSettings,
          drain_timeout_s: float) -> Cycle:
    """Stop one process by its recorded pid, letting it drain, and start it again."""
    name = component.name
    tracked = registry.running(name)
    if tracked is None:
        return Cycle(name, 0, None, "unknown", 0.0, f"{name} is not running")
    started = time.monotonic()
    drained = registry.terminate(name, drain_timeout_s)
    stopped_s = time.monotonic() - started
    how = describe_exit(exit_status(tracked.pid))
    error = None
    if drained is False:
        error = (f"{name} (pid {tracked.pid}) did not exit within {drain_timeout_s:g}s of"
                 f" SIGTERM and was killed")
    elif how not in ("code 0", "unknown"):
        error = f"{name} (pid {tracked.pid}) exited with {how} after SIGTERM, not 0"
    try:
        launcher.start_component(component, registry, settings, lambda line: None)
    except StackError as failure:
        error = error or str(failure).split("\n", 1)[0]
        registry.stop(name)  # started but never healthy: leave no half-alive process
    new = registry.running(name)
    return Cycle(name, tracked.pid, new.pid if new else None, how, stopped_s, error)


# -- asking the supervisor -------------------------------------------------------------

def requests_dir(settings: StackSettings) -> Path:
    return settings.state_dir / "restarts"


def request(settings: StackSettings, name: str, pid: int, drain_timeout_s: float) -> None:
    folder = requests_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.result.json").unlink(missing_ok=True)
    temporary = folder / f"{name}.request.tmp"
    temporary.write_text(json.dumps({"pid": pid, "drain_timeout_s": drain_timeout_s}))
    os.replace(temporary, folder / f"{name}.request.json")


def pending(settings: StackSettings) -> list[tuple[str, int, float]]:
    """(name, pid, drain timeout) of each request not yet taken; taking removes it."""
    folder = requests_dir(settings)
    taken = []
    for path in sorted(folder.glob("*.request.json")) if folder.exists() else []:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        path.unlink(missing_ok=True)
        taken.append((path.name.removesuffix(".request.json"), int(data["pid"]),
                      float(data["drain_timeout_s"])))
    return taken


def answer(settings: StackSettings, outcome: Cycle) -> None:
    folder = requests_dir(settings)
    temporary = folder / f"{outcome.name}.result.tmp"
    temporary.write_text(json.dumps(asdict(outcome)))
    os.replace(temporary, folder / f"{outcome.name}.result.json")


def await_answer(settings: StackSettings, registry: ProcessRegistry, name: str,
                 timeout_s: float) -> Cycle:
    path = requests_dir(settings) / f"{name}.result.json"
    deadline = time.monotonic() + timeout_s
    recorded = registry.get(SUPERVISOR) is not None  # else it runs in this process (tests)
    while time.monotonic() < deadline:
        try:
            outcome = Cycle(**json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        else:
            path.unlink(missing_ok=True)
            return outcome
        if recorded and registry.running(SUPERVISOR) is None:
            raise RestartError(f"the supervisor exited before restarting {name}; see"
                               f" {registry.log_file(SUPERVISOR)}")
        time.sleep(POLL_S)
    (requests_dir(settings) / f"{name}.request.json").unlink(missing_ok=True)
    raise RestartError(f"the supervisor did not restart {name} within {timeout_s:.0f}s;"
                       f" see {registry.log_file(SUPERVISOR)} and {registry.log_file(name)}")


# -- back again ------------------------------------------------------------------------

def consuming(settings: StackSettings, name: str, idle_since: list[float]) -> bool:
    """Counted an event since its start, or no lag for ``IDLE_CONSUMING_S``."""
    try:
        reading = drain.read(drain.metrics_port(settings, name))
    except (requests.RequestException, ValueError):
        idle_since.clear()
        return False
    if reading.events > 0:
        return True
    if reading.lag:
        idle_since.clear()
        return False
    if not idle_since:
        idle_since.append(time.monotonic())
    return time.monotonic() - idle_since[0] >= IDLE_CONSUMING_S


def wait_back(component: Component, registry: ProcessRegistry, settings: StackSettings,
              timeout_s: float) -> None:
    name = component.name
    deadline = time.monotonic() + timeout_s
    idle_since: list[float] = []
    while time.monotonic() < deadline:
        if registry.running(name) is None:
            raise RestartError(f"{name} exited after its restart; see {registry.log_file(name)}")
        if component.healthy() and (not is_consumer(name)
                                    or consuming(settings, name, idle_since)):
            return
        time.sleep(POLL_S)
    what = "consuming" if is_consumer(name) else "healthy"
    raise RestartError(f"{name} not {what} again {timeout_s:g}s after its restart;"
                       f" see {registry.log_file(name)}")


def restart_one(settings: StackSettings, name: str, supervised: bool,
                drain_timeout_s: float = DRAIN_TIMEOUT_S,
                back_timeout_s: float = BACK_TIMEOUT_S) -> Restarted:
    registry = launcher.registry_for(settings)
    component = component_named(settings, name)
    tracked = registry.running(name)
    if tracked is None:
        raise RestartError(f"{name} is not running (`choreo up` starts it); see"
                           f" {registry.log_file(name)}")
    started = time.monotonic()
    if supervised:
        request(settings, name, tracked.pid, drain_timeout_s)
        outcome = await_answer(settings, registry, name,
                               drain_timeout_s + settings.start_timeout_s + back_timeout_s)
    else:
        outcome = cycle(component, registry, settings, drain_timeout_s)
    if outcome.error:
        raise RestartError(f"restart of {name} failed: {outcome.error}; see"
                           f" {registry.log_file(name)}")
    wait_back(component, registry, settings, back_timeout_s)
    return Restarted(outcome, time.monotonic() - started)


def rolling_restart(settings: StackSettings, names: Sequence[str], report: Report = print,
                    supervised: bool | None = None,
                    drain_timeout_s: float = DRAIN_TIMEOUT_S,
                    back_timeout_s: float = BACK_TIMEOUT_S) -> list[Restarted]:
    """Restart ``names`` one after the other; the first failure stops the roll (raised)."""
    if supervised is None:
        supervised = launcher.registry_for(settings).running(SUPERVISOR) is not None
    done = []
    for name in names:
        restarted = restart_one(settings, name, supervised, drain_timeout_s, back_timeout_s)
        c = restarted.cycle
        back = "consuming" if is_consumer(name) else "answering"
        report(f"{name:<13} restarted in {restarted.took_s:.1f}s: pid {c.old_pid} exited"
               f" ({c.exit}) after {c.stopped_s:.1f}s draining, pid {c.new_pid} {back}"
               + (" (by the supervisor)" if supervised else ""))
        done.append(restarted)
    if done:
        longest = max(done, key=lambda r: r.took_s)
        report(f"rolling restart done: {len(done)} processes, longest stall"
               f" {longest.took_s:.1f}s ({longest.cycle.name})")
    return done
