"""The fault injector: SIGKILL a process by its recorded pid, keep it dead, bring it back.

SIGKILL, not SIGTERM: nothing gets to flush, commit offsets or finish a request, which
is the crash the outbox, the inbox and the idempotency keys exist for. The restart is
``launcher.up``, which starts only what is not running, exactly as an operator would; in a
supervised run the supervisor restarts the process and ``launcher.up`` only waits for it.
Faults are applied one after another: the run tests recovery from each crash, not the
pile-up of several at once.

Two targets kill nothing: ``psp-fail`` and ``psp-slow`` switch the psp's outage on for
the fault's pause (``services/psp/outage.py``), so the provider is failing or slow for a
while rather than dead, which is what payments' circuit breaker is for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

from choreo.chaos.plan import Fault, Plan, is_link
from choreo.chaos.resume import longest_stall, metrics_url, wait_consuming
from choreo.services.payments.psp_client import PspClient, PspError
from choreo.stack import launcher, links
from choreo.stack.broker import is_broker_node
from choreo.stack.processes import ProcessRegistry
from choreo.stack.services import consumer_processes, service_components
from choreo.stack.settings import StackSettings

Report = Callable[[str], None]
RESTART_ATTEMPTS = 3
REJOIN_TIMEOUT_S = 60.0
STALL_WINDOW_S = 30.0
"""How long after a broker node's kill the consumers' flow is watched for its stall."""
OUTAGES = {"psp-fail": "fail", "psp-slow": "slow"}
OUTAGE_SLOW_DELAY_S = 6.0
"""Longer than payments' psp timeout (5 s by default): each call times out, and is
carried out all the same, which a retry with the same key then finds."""


@dataclass
class FaultRecord:
    fault: Fault
    killed_at: datetime
    killed_at_s: float
    """Seconds after the load started."""
    pid: int | None
    """The pid that died; None when the target was not running at the time."""
    collateral: list[str] = field(default_factory=list)
    """Other components found dead when the restart began: they crashed on their own."""
    restarted_at_s: float | None = None
    consuming_at_s: float | None = None
    """When the restarted consumer counted its first event (consumers only)."""
    stall_s: float | None = None
    """Broker nodes only: the longest time a consumer counted no event after the kill."""
    restart_error: str | None = None
    supervised: bool = False
    """Restarted by the supervisor, without the planned pause."""

    @property
    def outage_s(self) -> float | None:
        """Kill to healthy again."""
        return None if self.restarted_at_s is None else self.restarted_at_s - self.killed_at_s

    @property
    def consuming_after_s(self) -> float | None:
        """Kill to consuming again: the outage plus taking the partitions back."""
        return None if self.consuming_at_s is None else self.consuming_at_s - self.killed_at_s


def restart(settings: StackSettings, record: FaultRecord) -> None:
    """``launcher.up`` until it succeeds; a start that times out under load is tried again.

    While a supervisor runs, ``launcher.up`` starts nothing itself: it waits until the
    supervisor has every process running and healthy again.

    Any failure is recorded rather than raised: the run goes on and reports it, since a
    process that does not come back is itself a finding.
    """
    for attempt in range(1, RESTART_ATTEMPTS + 1):
        try:
            launcher.up(settings, report=lambda line: None)
            record.restart_error = None
            return
        except Exception as error:  # StackError, or a probe's psycopg/requests error
            record.restart_error = f"attempt {attempt}: {type(error).__name__}: {error}"


class FaultInjector(threading.Thread):
    def __init__(self, settings: StackSettings, plan: Plan, started: float,
                 report: Report, supervised: bool = False) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self.settings = settings
        self.supervised = supervised
        """The supervisor brings killed processes back: no pause, ``restart`` only waits."""
        self.plan = plan
        self.started = started
        self.report = report
        self.records: list[FaultRecord] = []
        self._halt = threading.Event()
        self._watchers: list[threading.Thread] = []
        self._components = [component.name for component in
                            launcher.infrastructure(settings) + service_components(settings)]

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> None:
        registry = launcher.registry_for(self.settings)
        for fault in self.plan.faults:
            if self._halt.wait(max(0.0, fault.at_s - self.elapsed())):
                return
            if fault.target in OUTAGES:
                self.outage(registry, fault)
                continue
            if is_link(fault.target):
                self.partition(registry, fault)
                continue
            tracked = registry.running(fault.target)
            registry.kill(fault.target)
            record = FaultRecord(fault, datetime.now(UTC), self.elapsed(),
                                 tracked.pid if tracked else None, supervised=self.supervised)
            self.records.append(record)
            if is_broker_node(fault.target):
                self.watch_stall(record)
            if self.supervised:
                self.report(f"  t={record.killed_at_s:6.1f}s  SIGKILL {fault.target}"
                            f" (pid {record.pid}), the supervisor restarts it")
            else:
                self.report(f"  t={record.killed_at_s:6.1f}s  SIGKILL {fault.target}"
                            f" (pid {record.pid}), down for {fault.down_s:.1f}s")
                self._halt.wait(fault.down_s)
            record.collateral = [name for name in self._components
                                 if name != fault.target and registry.running(name) is None]
            restart(self.settings, record)
            record.restarted_at_s = self.elapsed()
            state = f"FAILED: {record.restart_error}" if record.restart_error else "healthy"
            if record.collateral:
                state += f"; also restarted {', '.join(record.collateral)}, found dead"
            self.report(f"  t={record.restarted_at_s:6.1f}s  {fault.target} restarted, {state}")
            self.watch_rejoin(record)
        for watcher in self._watchers:
            watcher.join()

    def outage(self, registry: ProcessRegistry, fault: Fault) -> None:
        """The psp failing or slow for the fault's pause; its process is left alone."""
        tracked = registry.running("psp")
        record = FaultRecord(fault, datetime.now(UTC), self.elapsed(),
                             tracked.pid if tracked else None)
        self.records.append(record)
        mode = OUTAGES[fault.target]
        try:
            with PspClient(f"http://127.0.0.1:{self.settings.port_of('psp')}", 5.0) as psp:
                psp.start_outage(mode, fault.down_s,
                                 OUTAGE_SLOW_DELAY_S if mode == "slow" else None)
        except (PspError, OSError) as error:
            record.restart_error = f"outage not switched on: {error}"
        self.report(f"  t={record.killed_at_s:6.1f}s  psp {mode}ing every call"
                    f" for {fault.down_s:.1f}s")
        self._halt.wait(fault.down_s)
        record.restarted_at_s = self.elapsed()
        self.report(f"  t={record.restarted_at_s:6.1f}s  psp outage over")

    def partition(self, registry: ProcessRegistry, fault: Fault) -> None:
        """A link cut for the fault's pause (``stack.links``); both ends stay up, and the
        service must ride it out: nothing to restart, nothing may die."""
        service = fault.target.partition(">")[0]
        tracked = registry.running(service)
        record = FaultRecord(fault, datetime.now(UTC), self.elapsed(),
                             tracked.pid if tracked else None)
        self.records.append(record)
        try:
            links.set_mode(self.settings, fault.target, fault.mode)
        except requests.RequestException as error:
            record.restart_error = f"link not cut: {error}"
        self.report(f"  t={record.killed_at_s:6.1f}s  {fault.target} {fault.mode}"
                    f" for {fault.down_s:.1f}s")
        self._halt.wait(fault.down_s)
        try:
            links.set_mode(self.settings, fault.target, "pass")
        except requests.RequestException as error:
            record.restart_error = f"link not restored: {error}"
        record.restarted_at_s = self.elapsed()
        record.collateral = [name for name in self._components
                             if registry.running(name) is None]
        self.report(f"  t={record.restarted_at_s:6.1f}s  {fault.target} passes again")
        self.watch_rejoin(record)

    def watch_rejoin(self, record: FaultRecord) -> None:
        """Time the consumer's return beside the run, so the next fault is not delayed."""
        url = metrics_url(self.settings, record.fault.target.partition(">")[0])
        if url is None or record.restart_error:
            return

        def watch() -> None:
            consuming = wait_consuming(url, REJOIN_TIMEOUT_S)
            if consuming is not None:
                record.consuming_at_s = consuming - self.started
                self.report(f"  t={record.consuming_at_s:6.1f}s  {record.fault.target}"
                            " consuming again")

        watcher = threading.Thread(target=watch, name=f"chaos-rejoin-{record.fault.target}",
                                   daemon=True)
        self._watchers.append(watcher)
        watcher.start()

    def watch_stall(self, record: FaultRecord) -> None:
        """From the kill on, beside the run: how long the flow through the broker stopped."""
        urls = [url for name in consumer_processes(self.settings)
                if (url := metrics_url(self.settings, name)) is not None]

        def watch() -> None:
            record.stall_s = longest_stall(urls, STALL_WINDOW_S)
            self.report(f"  {record.fault.target} at t={record.killed_at_s:6.1f}s: consumers"
                        f" stalled for {record.stall_s:.1f}s at most")

        watcher = threading.Thread(target=watch, name=f"chaos-stall-{record.fault.target}",
                                   daemon=True)
        self._watchers.append(watcher)
        watcher.start()

    def stop(self) -> None:
        """No further faults; a process already killed is still restarted first."""
        self._halt.set()
        self.join()

    @property
    def last_recovery_s(self) -> float:
        """When the last restart ended; 0 when there were no faults."""
        return max((r.restarted_at_s or 0.0 for r in self.records), default=0.0)
