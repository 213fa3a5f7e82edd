"""Watch the stock while the faults happen, not only once everything has settled.

Every move between available, reserved and sold is one transaction, and each sample is
one statement, so the per-SKU sum must equal the initial stock in every sample, and no
counter may ever be seen below zero. A violation caught mid-run would vanish by the
final check if a later compensation happened to cover it.
"""

from __future__ import annotations

import threading
import time

from choreo.testkit.observer import Observer

INTERVAL_S = 0.5


class StockSampler(threading.Thread):
    def __init__(self, observer: Observer, initial: dict[str, int], started: float) -> None:
        super().__init__(name="chaos-stock-sampler", daemon=True)
        self.observer = observer
        self.initial = initial
        self.started = started
        self.samples = 0
        self.failed_reads = 0
        self.unbalanced: list[str] = []
        """Samples where a SKU's available + reserved + sold differed from its initial stock."""
        self.negative: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(INTERVAL_S):
            try:
                stock = self.observer.stock()
            except Exception:  # a read that fails says nothing about the stock
                self.failed_reads += 1
                continue
            self.samples += 1
            at = time.monotonic() - self.started
            for sku, counts in stock.items():
                seen = f"t={at:.1f}s {sku}: {counts} (initial {self.initial[sku]})"
                if counts.total != self.initial[sku]:
                    self.unbalanced.append(seen)
                if min(counts.available, counts.reserved, counts.sold) < 0:
                    self.negative.append(seen)

    def stop(self) -> None:
        self._halt.set()
        self.join()
