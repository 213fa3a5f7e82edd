"""The supervisor: start the stack, then bring back any process of it that exits.

``choreo up`` starts this module as a detached process (``python -m choreo.stack.supervisor``),
tracked by pid like everything else. It starts the stack itself, so it is the parent of
what it starts and learns how each process ended (exit code or signal). A process it did
not start (one still running from before the supervisor was) is watched by pid too, but
its first exit status is ``unknown``: only a parent can know it.

Each exit is restarted after an exponential backoff (0.5 s, 1 s, 2 s, 4 s), and a process
that exited ``MAX_EXITS`` times within ``WINDOW_S``, or whose last ``MAX_EXITS`` restarts
in a row never became healthy, is given up on: a crash loop is a bug to look at, not
something to hammer. The second count is what catches a process that stays up but never
answers its health check: each such try takes the whole start-up timeout (90 s), longer
than the window, so the window alone would retry it forever. ``SIGHUP`` (what a later
``choreo up`` sends) tries the given-up ones again. ``choreo restart`` asks through a
request file (see ``stack.restart``): the supervisor then stops that process with SIGTERM,
lets it drain and starts it again at once, as a requested restart that is not counted as
an exit.
The loop itself never waits for long: PostgreSQL and Redis are started in it (a second
or less), a service is launched and its health watched on later rounds, and what waits
for minutes at worst runs on threads. The broker's nodes (their topics, and for a new
log the outbox window), Connect (its connectors RUNNING) and the relays are restarted one
at a time in the order they were due on one thread of their own (the chain); a
requested restart drains and starts its process on a thread of its own. So PostgreSQL,
Redis and the services come back within seconds whatever else is restarting (a Connect
restart once held the loop for up to 90 s per connector while a killed PostgreSQL
waited). Every few seconds it also restarts FAILED connector tasks.

Every child is still written to the pid registry, so ``choreo down`` stops everything by
pid even when this process was SIGKILLed; ``down`` stops the supervisor first, so nothing
is restarted while the stack is going down. Only exits are supervised: a process that
hangs while alive is not detected here.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from choreo.stack import launcher, metrics, restart
from choreo.stack.broker import is_broker_node, node_name
from choreo.stack.cdc import ensure_connect
from choreo.stack.components import Component
from choreo.stack.connectors import connector_statuses, restart_failed_tasks
from choreo.stack.errors import ConfigError
from choreo.stack.processes import describe_exit, exit_status
from choreo.stack.relays import relay_components
from choreo.stack.services import service_components
from choreo.stack.settings import StackSettings
from choreo.stack.supervision import ProcessRecord, SupervisorState, shape_of, state_file

MAX_EXITS = 5
WINDOW_S = 60.0
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
POLL_S = 0.25
TASK_CHECK_S = 5.0

Report = Callable[[str], None]


def backoff_s(recent_exits: int) -> float:
    """Delay before restarting after the ``recent_exits``-th exit within the window."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (recent_exits - 1))


@dataclass
class Child:
    component: Component
    record: ProcessRecord = field(default_factory=ProcessRecord)
    exits: deque[float] = field(default_factory=deque)
    """``time.monotonic()`` of the exits within the window."""
    due: float | None = None
    """When the next restart is due; None while the process runs (or was given up on)."""
    starting: float | None = None
    """While a restarted process is not healthy yet: when it must be by (monotonic)."""
    started_at: float = 0.0
    failed_starts: int = 0
    """Restarts in a row that never became healthy; back to 0 once one does."""
    busy: Job | None = None
    """A restart running off the loop (a broker node, Connect, a relay, a requested
    restart); the loop leaves the child alone until it is done, then takes the outcome."""


@dataclass(eq=False)
class Job:
    """Work the loop hands to a thread because it waits for minutes at worst (Connect's
    connectors to be RUNNING, a service to drain); the loop looks at ``done`` each round
    and takes the outcome itself, so only the loop changes the children's state."""

    work: Callable[[], object]
    finish: Callable[[Job], None]
    """Run by the loop once ``done`` is set."""
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: Exception | None = None

    def __call__(self) -> None:
        try:
            self.result = self.work()
        except Exception as error:  # noqa: BLE001 - the loop reports it as the outcome
            self.error = error
        finally:
            self.done.set()


def restarters(settings: StackSettings, report: Report) -> dict[str, Callable[[], None]]:
    """How a component whose restart needs more than its process is brought back.

    Any node of the broker: its topics are created again if missing, and a new log (its
    data folders were deleted) gets the outbox window before Connect streams into it
    (``launcher.start_broker`` stops Connect for that; Connect is then restarted as a
    planned restart of its own, see ``Supervisor.restart``, so a failure of Connect does
    not count against the broker). Connect and the polling relays publish the window
    first if it is still owed (a republish that failed), so nothing newer reaches a new
    log before it. The standalone Connect worker keeps its connectors in memory, so every
    start of it deploys them again (``ensure_connect``, which also waits for a just-killed
    worker's port).
    """
    registry = launcher.registry_for(settings)

    def publisher(start: Callable[[], object]) -> Callable[[], None]:
        """Connect or a relay: never into a new log before its window is out."""
        def restart_it() -> None:
            launcher.publish_owed_window(settings, registry, report)
            start()
        return restart_it

    nodes = {node_name(node): lambda node=node: launcher.restart_broker_node(
                 settings, registry, node, report)
             for node in settings.broker_nodes()}
    relays = {relay.name: publisher(lambda relay=relay: launcher.start_component(
                  relay, registry, settings, lambda line: None))
              for relay in relay_components(settings)}
    return {**nodes, "connect": publisher(lambda: ensure_connect(settings, report)), **relays}


class Supervisor:
    def __init__(self, settings: StackSettings, components: Sequence[Component],
                 report: Report, state_path: Path | None = None,
                 restart_with: dict[str, Callable[[], None]] | None = None) -> None:
        self.settings = settings
        self.registry = launcher.registry_for(settings)
        self.children = [Child(component) for component in components]
        self.report = report
        self.state = SupervisorState(processes={c.component.name: c.record
                                                for c in self.children},
                                     shape=shape_of(settings))
        self.state_path = state_path or state_file(settings)
        self.restart_with = (restart_with if restart_with is not None
                             else restarters(settings, report))
        self.watches_connect = any(c.component.name == "connect" for c in self.children)
        self.tasks_checked = 0.0
        self.retry_requested = threading.Event()
        self.stop_requested = threading.Event()
        self.chain: queue.Queue[Job] = queue.Queue()
        """Restarts of the broker's nodes, Connect and the relays, one at a time in the
        order they were due (start order: the broker before Connect), on one thread, so
        that a broker restart that stops Connect never races Connect's own restart."""
        threading.Thread(target=self._run_chain, name="restarts", daemon=True).start()

    def _run_chain(self) -> None:
        while True:
            self.chain.get()()

    def save(self, phase: str | None = None, error: str | None = None,
             config_error: bool = False) -> None:
        if phase is not None:
            self.state.phase, self.state.error = phase, error
            self.state.config_error = config_error
        self.state.save(self.state_path)

    def run(self) -> None:
        """Watch until ``stop_requested`` is set (or SIGTERM raises SystemExit)."""
        self.save("supervising")
        while not self.stop_requested.wait(POLL_S):
            if self.retry_requested.is_set():
                self.retry_requested.clear()
                self.retry_given_up()
            self.take_restart_requests()
            for child in self.children:
                self.check(child)
            self.restart_failed_tasks()

    def take_restart_requests(self) -> None:
        """Each ``choreo restart`` asked for: drain, start again, answer with the outcome.

        Whatever goes wrong with one request is that request's answer: the supervisor
        itself must keep watching."""
        try:
            requests = restart.pending(self.settings)
        except (OSError, ValueError, KeyError) as error:
            self.report(f"restart requests unreadable: {error}")
            return
        for name, pid, drain_timeout_s in requests:
            try:
                self.take_restart_request(name, pid, drain_timeout_s)
            except Exception as error:  # noqa: BLE001 - answered, and supervision goes on
                restart.answer(self.settings, restart.Cycle(name, pid, None, "unknown", 0.0,
                                                            f"restart failed: {error}"))

    def take_restart_request(self, name: str, pid: int, drain_timeout_s: float) -> None:
        """Checked here, carried out on a thread of its own: draining and waiting for
        health took up to ~110 s, and the loop restarted nothing else meanwhile."""
        child = next((c for c in self.children if c.component.name == name), None)
        tracked = self.registry.running(name)
        if (child is None or child.due is not None or child.starting is not None
                or child.busy is not None or child.record.gave_up):
            why = "is not watched" if child is None else "is down, restart pending"
            outcome = restart.Cycle(name, pid, None, "unknown", 0.0,
                                    f"{name} {why} by the supervisor")
        elif tracked is None or tracked.pid != pid:
            outcome = restart.Cycle(name, pid, tracked.pid if tracked else None, "unknown",
                                    0.0, f"pid {pid} is no longer {name}'s process")
        else:
            self.report(f"{name}: restart requested; draining pid {pid}")
            child.busy = Job(lambda: restart.cycle(child.component, self.registry,
                                                   self.settings, drain_timeout_s),
                             lambda job: self.requested_restart_done(child, pid, job))
            threading.Thread(target=child.busy, name=f"restart-{name}", daemon=True).start()
            return
        restart.answer(self.settings, outcome)
        self.save()

    def requested_restart_done(self, child: Child, pid: int, job: Job) -> None:
        name = child.component.name
        outcome = job.result if isinstance(job.result, restart.Cycle) else restart.Cycle(
            name, pid, None, "unknown", 0.0, f"restart failed: {job.error}")
        child.record.requested_restarts += 1
        child.record.last_exit = f"{outcome.exit} (requested restart)"
        if outcome.new_pid is None:  # did not start: the usual backoff takes over
            self.exited(child, f"requested restart failed: {outcome.error}")
        else:
            self.report(f"{name} restarted on request (pid {outcome.new_pid}; the"
                        f" old one exited {outcome.exit} after {outcome.stopped_s:.1f}s)")
        restart.answer(self.settings, outcome)
        self.save()

    def restart_failed_tasks(self) -> None:
        """A FAILED connector task (its database was down a moment, say) is restarted too."""
        now = time.monotonic()
        if not self.watches_connect or now - self.tasks_checked < TASK_CHECK_S:
            return
        self.tasks_checked = now
        statuses = connector_statuses(self.settings)
        metrics.publish_connector_states(statuses)
        restarted = restart_failed_tasks(self.settings, statuses or {})
        if restarted:
            self.report(f"restarted FAILED connector tasks: {', '.join(restarted)}")

    def check(self, child: Child) -> None:
        if child.busy is not None:
            if child.busy.done.is_set():
                job, child.busy = child.busy, None
                job.finish(job)
            return
        if child.record.gave_up or self.waits_for_broker(child):
            return
        if child.starting is not None:
            self.watch_start(child)
            return
        if child.due is None:
            if self.registry.running(child.component.name):
                return
            self.exited(child, self.last_exit(child.component.name))
        if child.due is not None and time.monotonic() >= child.due:
            self.restart(child)

    def last_exit(self, name: str) -> str:
        tracked = self.registry.get(name)
        return describe_exit(exit_status(tracked.pid) if tracked else None)

    def exited(self, child: Child, how: str) -> None:
        now = time.monotonic()
        name = child.component.name
        child.exits.append(now)
        while child.exits and now - child.exits[0] > WINDOW_S:
            child.exits.popleft()
        child.record.last_exit = how
        if len(child.exits) >= MAX_EXITS:
            self.give_up(child, f"{len(child.exits)} exits within {WINDOW_S:.0f}s, the"
                                f" last {how}")
        elif child.failed_starts >= MAX_EXITS:
            self.give_up(child, f"{child.failed_starts} restarts in a row never became"
                                f" healthy, the last {how}")
        else:
            child.due = now + backoff_s(max(len(child.exits), child.failed_starts))
            self.report(f"{name} exited ({how}); restart in {child.due - now:.1f}s")
        self.save()

    def give_up(self, child: Child, why: str) -> None:
        child.record.gave_up = True
        self.report(f"giving up on {child.component.name}: {why}; `choreo up` tries again")

    def restart(self, child: Child) -> None:
        """Start it again. A service is only launched here: its health is watched by
        ``watch_start`` on the next rounds, so a process that cannot become healthy until
        something else is back (a service whose database was killed a moment later) never
        holds up that other restart. What the rest needs first (PostgreSQL, Redis) is
        waited for, and the broker and Connect need more than their process
        (``restarters``): those are brought back in one go."""
        name = child.component.name
        child.due = None
        child.record.restarts += 1
        metrics.RESTARTS.labels(name).inc()
        child.started_at = time.monotonic()
        if name in self.restart_with:
            child.busy = Job(self.restart_with[name], lambda job: self.chain_done(child, job))
            self.chain.put(child.busy)
            return
        try:
            if child.component.needed_first:
                launcher.start_component(child.component, self.registry, self.settings,
                                         lambda line: None)
            else:
                launcher.launch(child.component, self.registry)
                child.starting = child.started_at + self.settings.start_timeout_s
                return
        except Exception as error:  # noqa: BLE001 - any failure is reported and retried
            self.restart_failed(child, str(error))
            return
        self.restarted(child)

    def waits_for_broker(self, child: Child) -> bool:
        """Connect and the relays are left alone while a broker node restarts: for a new
        log it stops them on purpose, which is no exit of theirs to count."""
        name = child.component.name
        return (name == "connect" or name.startswith("relay-")) and any(
            other.busy is not None and is_broker_node(other.component.name)
            for other in self.children)

    def chain_done(self, child: Child, job: Job) -> None:
        """The outcome of a restart that ran on the chain's thread, taken by the loop."""
        if job.error is not None:
            self.restart_failed(child, str(job.error))
            return
        if is_broker_node(child.component.name):  # a new log stopped Connect and the relays
            for other in self.children:
                other_name = other.component.name
                if ((other_name == "connect" or other_name.startswith("relay-"))
                        and other.busy is None and not self.registry.running(other_name)):
                    other.due, other.starting = time.monotonic(), None  # stopped for it
        self.restarted(child)

    def watch_start(self, child: Child) -> None:
        """One look at a restarted process: healthy, dead, or out of time."""
        name = child.component.name
        if self.registry.running(name) is None:
            child.starting = None
            child.failed_starts += 1
            self.report(f"restart {child.record.restarts} of {name} failed: it exited"
                        " during start-up")
            self.exited(child, self.last_exit(name))
        elif child.component.healthy():
            child.starting = None
            self.restarted(child)
        elif child.starting is not None and time.monotonic() >= child.starting:
            child.starting = None
            self.restart_failed(child, f"not healthy on port {child.component.port} after"
                                f" {self.settings.start_timeout_s:.0f}s")

    def restart_failed(self, child: Child, why: str) -> None:
        """A process up but not usable is started afresh: stopped, and counted as an exit."""
        name = child.component.name
        running = self.registry.running(name) is not None
        if running:
            self.registry.stop(name)
        child.failed_starts += 1
        self.report(f"restart {child.record.restarts} of {name} failed: {why}")
        self.exited(child, f"restart failed: {why}" if running else self.last_exit(name))

    def restarted(self, child: Child) -> None:
        name = child.component.name
        child.failed_starts = 0
        pid = self.registry.get(name)
        self.report(f"{name} restarted (pid {pid.pid if pid else '?'}, restart"
                    f" {child.record.restarts}) in {time.monotonic() - child.started_at:.1f}s")
        self.save()

    def retry_given_up(self) -> None:
        for child in self.children:
            if child.record.gave_up:
                child.record.gave_up = False
                child.exits.clear()
                child.failed_starts = 0
                child.due = time.monotonic()
                self.report(f"trying {child.component.name} again")
        self.save()


def say(line: str) -> None:
    """One timestamped line in the supervisor's log, which ``choreo up`` relays."""
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ} {line}", flush=True)


def components_for(settings: StackSettings, with_services: bool) -> list[Component]:
    return launcher.infrastructure(settings) + (service_components(settings)
                                             if with_services else [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--infra-only", action="store_true",
                        help="start and watch only PostgreSQL, Redis, the broker and Connect")
    args = parser.parse_args(argv)
    settings = StackSettings.from_env(os.environ)
    with_services = not args.infra_only
    supervisor = Supervisor(settings, components_for(settings, with_services), say)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, lambda signum, frame: supervisor.retry_requested.set())
    say(f"supervisor starting the stack in {settings.state_dir}")
    supervisor.save("starting")
    try:
        launcher.start_stack(settings, say, with_services)
    except Exception as error:  # noqa: BLE001 - reported to `choreo up` (exit 2 or 3)
        say(f"start failed: {error}")
        supervisor.save("failed", str(error), config_error=isinstance(error, ConfigError))
        return 2
    say("stack started; supervising")
    try:
        metrics.serve(settings.supervisor_metrics_port)
    except OSError as error:  # the stack runs on; only its connector metrics are missing
        say(f"supervisor /metrics not served on {settings.supervisor_metrics_port}: {error}")
    try:
        supervisor.run()
    finally:
        supervisor.save("stopped")
        say("supervisor stopped; the processes it watched keep running unsupervised")
    return 0


if __name__ == "__main__":
    sys.exit(main())
