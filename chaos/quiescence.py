"""When is a chaos run over? When nothing is left in flight anywhere.

Quiescent means: every accepted order is stored and its saga settled (terminal, and a
cancellation's compensations seen), no reservation of the run still holds stock, and
no payment of an unconfirmed order is still captured (a refund owed), and no consumer
is behind its topics. The last condition matters: an order cancelled by its deadline
looks settled while its StockReserved still waits in a topic, and the capture and
refund that follow it come after a quiescence declared without it (seen in a storm).
Only then do the invariants mean something; before, a check could fail merely for
being early.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from choreo.stack import drain
from choreo.stack.services import consumer_processes
from choreo.stack.settings import StackSettings
from choreo.testkit.observer import Observer, Snapshot
from choreo.testkit.orders_client import saga_settled

POLL_S = 0.5
PROGRESS_EVERY_S = 5.0


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


def consumers_behind(settings: StackSettings) -> list[str]:
    """What the consumers have not read yet, in words; empty when all caught up."""
    left = []
    for name in consumer_processes(settings):
        try:
            lag = drain.read(drain.metrics_port(settings, name)).lag
        except (requests.RequestException, ValueError):
            left.append(f"{name} not answering")
            continue
        if lag:
            left.append(f"{name} {lag} events behind")
    return left


def wait_quiescent(observer: Observer, accepted: int, since: float, bound_s: float,
                   report: Callable[[str], None]) -> float | None:
    """Seconds from ``since`` (a ``time.monotonic()``, maybe past) to quiescence; None when
    it is not reached within ``bound_s`` of ``since``."""
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    while True:
        left = outstanding(observer.snapshot(), accepted) or consumers_behind(observer.settings)
        now = time.monotonic()
        if not left:
            return now - since
        if now - since > bound_s:
            report(f"  not quiescent after {bound_s:.0f}s: {', '.join(left)}")
            return None
        if now >= next_progress:
            report(f"  +{now - since:5.1f}s waiting: {', '.join(left)}")
            next_progress = now + PROGRESS_EVERY_S
        time.sleep(POLL_S)
