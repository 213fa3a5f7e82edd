"""When is a chaos run over? When nothing is left in flight anywhere.

Quiescent means: every accepted order is stored and its saga settled (terminal, and a
cancellation's compensations seen), no reservation of the run still holds stock, and
no payment of an unconfirmed order is still captured (a refund owed), no outbox holds a
row its relay has not published, and no consumer is behind its topics, all of it
unchanged for ``QUIET_S``. The last conditions matter: an order cancelled by its
deadline looks settled while its StockReserved still waits in a topic, and the capture
and refund that follow it come after a quiescence declared without it (seen in a
storm); an order is REJECTED in its database before its OrderRejected leaves the
outbox, and a Connect restarting under load published 47 of those after a quiescence
that had not waited for them, so the customers looked never told (seen in CI). Only
then do the invariants mean something; before, a check could fail merely for being
early.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from choreo.stack import drain
from choreo.stack.relay_marks import Marks, mark_relays, relays_behind
from choreo.stack.services import consumer_processes
from choreo.stack.settings import StackSettings
from choreo.testkit.observer import Observer, Snapshot
from choreo.testkit.orders_client import saga_settled

POLL_S = 0.5
PROGRESS_EVERY_S = 5.0
QUIET_S = 2.0
"""How long nothing may move before it counts as quiescent: a consumer's lag is measured
once a second, against the log end its last fetch saw."""


def outstanding(snapshot: Snapshot, accepted: int) -> list[str]:
    """What is still in flight, in words; empty when quiescent."""
    left = []
    if len(snapshot.orders) < accepted:
        left.append(f"{accepted - len(snapshot.orders)} accepted orders not stored")
    unsettled = sum(not saga_settled(order.as_api()) for order in snapshot.orders)
    if unsettled:
        left.append(f"{unsettled} sagas unsettled")
    if snapshot.open_reservations:
        left.append(f"{len(snapshot.open_reservations)} reservations held")
    reserved = sum(stock.reserved for stock in snapshot.stock.values())
    if reserved:
        left.append(f"{reserved} units reserved")
    owed = sum(order.status != "CONFIRMED" and snapshot.payment_status.get(order.id) == "captured"
               for order in snapshot.orders)
    if owed:
        left.append(f"{owed} refunds owed")
    return left


def consumers_behind(settings: StackSettings) -> tuple[list[str], dict[str, float]]:
    """What the consumers have not read yet, in words (empty when all caught up), and how
    many events each has handled so far."""
    left, handled = [], {}
    for name in consumer_processes(settings):
        try:
            reading = drain.read(drain.metrics_port(settings, name))
        except (requests.RequestException, ValueError):
            left.append(f"{name} not answering")
            continue
        handled[name] = reading.events
        if reading.lag:
            left.append(f"{name} {reading.lag} events behind")
    return left, handled


class Stillness:
    """Nothing in flight, and nothing moving: no consumer behind or handling events since
    the outboxes' relays were marked, every relay past its mark, for ``QUIET_S``; and
    then past a second mark, taken at the end, for what the intake or a job (no
    consumer) committed meanwhile."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.since: float | None = None
        """When the relays were first seen past their marks with nothing moving."""
        self.still = False
        """Quiet for ``QUIET_S``, and the closing marks reached too."""
        self._marks: Marks | None = None
        self._closing: Marks | None = None
        self._handled: dict[str, float] = {}

    def left(self, snapshot: Snapshot, accepted: int, now: float) -> list[str]:
        """What is still in flight or moving, in words; empty when still."""
        left = outstanding(snapshot, accepted)
        handled: dict[str, float] = {}
        if not left:
            left, handled = consumers_behind(self.settings)
        if left:
            self._marks = self._closing = self.since = None
            self.still = False
            return left
        if self._marks is None or handled != self._handled:
            self._marks, self._handled = mark_relays(self.settings), handled
            self._closing = self.since = None
            self.still = False
        left = relays_behind(self.settings, self._marks)
        if left:
            return left
        if self.since is None:
            self.since = now
        if now - self.since >= QUIET_S:
            if self._closing is None:
                self._closing = mark_relays(self.settings)
            left = relays_behind(self.settings, self._closing)
            self.still = not left
        return left


def wait_quiescent(observer: Observer, accepted: int, since: float, bound_s: float,
                   report: Callable[[str], None]) -> float | None:
    """Seconds from ``since`` (a ``time.monotonic()``, maybe past) to quiescence; None when
    it is not reached within ``bound_s`` of ``since``."""
    stillness = Stillness(observer.settings)
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    while True:
        now = time.monotonic()
        left = stillness.left(observer.snapshot(), accepted, now)
        if stillness.still and stillness.since is not None:
            return stillness.since - since
        if now - since > bound_s:
            report(f"  not quiescent after {bound_s:.0f}s: {', '.join(left) or 'still moving'}")
            return None
        if left and now >= next_progress:
            report(f"  +{now - since:5.1f}s waiting: {', '.join(left)}")
            next_progress = now + PROGRESS_EVERY_S
        time.sleep(POLL_S)
