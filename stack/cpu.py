"""CPU used by each component of the stack over a span of time.

What the fast path is judged by (issue 9): the idle stack's share of one core, printed
by ``choreo status``, and the CPU each saga costs, printed by the benchmarks. Both come
from the kernel's own accounting of the pids the launcher started (``/proc``), so they
include everything a component does, its children too, and nothing of the neighbours.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from choreo.stack.processes import cpu_seconds


@dataclass(frozen=True)
class CpuUsage:
    seconds: dict[str, float]
    """CPU-seconds used per component during the window."""
    wall_s: float

    def percent(self, name: str) -> float:
        """Share of one core, as top shows it."""
        return self.seconds[name] / self.wall_s * 100 if self.wall_s else 0.0

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    @property
    def total_percent(self) -> float:
        return self.total_s / self.wall_s * 100 if self.wall_s else 0.0


class CpuMeter:
    """Started before a run and read after it; a pid that died meanwhile counts what it
    had used when last seen, since its successor has another pid."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._started = time.monotonic()
        self._before = self._read()

    def _read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def read(self) -> CpuUsage:
        after = self._read()
        used = {name: max(0.0, after[name] - self._before[name]) for name in self.pids}
        return CpuUsage(used, time.monotonic() - self._started)


def measure(pids: Mapping[str, int], seconds: float) -> CpuUsage:
    meter = CpuMeter(pids)
    time.sleep(seconds)
    return meter.read()


def print_per_unit(usage: CpuUsage, units: int, unit: str) -> None:
    """CPU by component over a run, as a share of one core and as CPU-ms per unit."""
    print(f"\nCPU over {usage.wall_s:.1f}s by component: % of one core, CPU-ms per {unit}")
    for name, used in sorted(usage.seconds.items(), key=lambda item: -item[1]):
        per_unit = used * 1000 / units if units else 0.0
        print(f"  {name:<16}{usage.percent(name):>7.1f}%{per_unit:>9.2f} ms")
    total_per_unit = usage.total_s * 1000 / units if units else 0.0
    print(f"  {'total':<16}{usage.total_percent:>7.1f}%{total_per_unit:>9.2f} ms"
          f"  ({units} {unit}s)")
