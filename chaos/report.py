"""What a chaos run tells its reader: the faults, the outcomes, and each guarantee's verdict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from choreo.chaos.faults import FaultRecord
from choreo.chaos.invariants import Check
from choreo.chaos.load import Placed
from choreo.testkit.observer import OrderState


def clock(moment: datetime) -> str:
    """Milliseconds are enough to line a fault up with the services' JSON logs."""
    return moment.strftime("%H:%M:%S.%f")[:-3]


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


@dataclass(frozen=True)
class ChaosReport:
    seed: int
    run: str
    """The run's customer id; its Idempotency-Keys and orders carry it."""
    duration_s: float
    load_s: float
    """How long orders were sent: the planned duration, or until the last fault was over."""
    rate: float
    order_deadline_s: float
    initial_stock: dict[str, int]
    faults: list[FaultRecord]
    placed: list[Placed]
    orders: list[OrderState]
    quiescence_s: float | None
    bound_s: float
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def outcomes(self) -> Counter[str]:
        return Counter(f"{o.status} {o.reason}" if o.status == "CANCELLED" else o.status
                       for o in self.orders)

    def cancels(self) -> Counter[str]:
        """The customers' cancel requests by answer: 202 taken, 409 already final."""
        return Counter("no answer" if p.cancel.status is None else str(p.cancel.status)
                       for p in self.placed if p.cancel is not None)

    def lines(self) -> list[str]:
        out = [f"chaos run {self.run} (seed {self.seed}): orders at {self.rate:g}/s for"
               f" {self.load_s:.0f}s (planned {self.duration_s:g}s), deadline"
               f" {self.order_deadline_s:g}s, {len(self.faults)} faults",
               "stock: " + ", ".join(f"{sku}={units}"
                                     for sku, units in self.initial_stock.items()),
               "", "faults (SIGKILL; restarted by launcher.up after the pause, or by the supervisor"
                   " (pause -); healthy and consuming again, counted from the kill; for a"
                   " broker node, the longest a consumer handled nothing after it:",
               f"  {'#':>2}  {'killed at (UTC)':<15} {'t':>7}  {'target':<14}{'pid':>8}"
               f"  {'pause':>6}  {'healthy':>8}  {'consuming':>9}  {'stalled':>8}"]
        for number, record in enumerate(self.faults, 1):
            out.append(f"  {number:>2}  {clock(record.killed_at):<15} {record.killed_at_s:6.1f}s"
                       f"  {record.fault.target:<14}{record.pid or '-':>8}"
                       f"  {'     -' if record.supervised else f'{record.fault.down_s:5.1f}s'}"
                       f"  {seconds(record.outage_s):>8}"
                       f"  {seconds(record.consuming_after_s):>9}"
                       f"  {seconds(record.stall_s):>8}")
        out += ["", f"orders: {len(self.orders)}"]
        out += [f"  {outcome:<28}{count:>6}" for outcome, count in
                sorted(self.outcomes().items(), key=lambda item: -item[1])]
        cancels = self.cancels()
        out.append(f"customer cancels: {sum(cancels.values())} sent; answers "
                   + (", ".join(f"{answer}: {n}" for answer, n in sorted(cancels.items()))
                      or "none"))
        took = (f"{self.quiescence_s:.1f}s" if self.quiescence_s is not None
                else f"not reached within {self.bound_s:.0f}s")
        out += [f"quiescence after the last fault was over: {took} (bound {self.bound_s:.0f}s)",
                "", "invariants:"]
        for check in self.checks:
            out.append(f"  {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
            out += [f"          {failure}" for failure in check.failures]
        passed = sum(check.passed for check in self.checks)
        out += ["", f"result: {'PASS' if self.passed else 'FAIL'}"
                    f" ({passed}/{len(self.checks)} invariants hold)"]
        return out
