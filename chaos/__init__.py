"""Kill parts of the running system mid-saga and check that every guarantee still holds.

``run_chaos`` places orders at a steady rate while processes are SIGKILLed and
restarted, waits for quiescence, then checks the invariants listed in docs/chaos.md.
"""

from choreo.chaos.report import ChaosReport
from choreo.chaos.run import run_chaos

__all__ = ["ChaosReport", "run_chaos"]
