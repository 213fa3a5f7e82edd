"""What a chaos run will do, decided up front from the seed alone.

Every random choice (the orders, their tokens and cancellations, the SKUs' stock, which
process dies when and for how long) is drawn here from the seed, so two runs with the
same seed and parameters ask the same things of the system. What the system answers
still depends on timing: a seed reproduces the pressure, not the outcome. (Nor the
number of orders: the load goes on until the last fault is over, however long restarts
take on a busy machine, so that every fault hits a system under load.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from choreo.stack import manifest
from choreo.stack.broker import is_broker_node
from choreo.stack.settings import LINK_DEPENDENCIES, is_consumer


def default_targets() -> tuple[str, ...]:
    """The processes a run SIGKILLs unless told otherwise, by their names in the launcher's
    registry: every service of the manifest (participants first, then the stand-ins like
    the psp) and Connect."""
    services = manifest.MANIFEST
    return (*(p.name for p in services if p.participant),
            *(p.name for p in services if not p.participant), "connect")

OUTAGE_TARGETS = ("psp-fail", "psp-slow")
"""Not killed: the psp stays up but answers every charge and refund with 503, or only
after a delay longer than payments' timeout, for the fault's pause (chaos/faults.py)."""

OPTIONAL_TARGETS = ("redis", "broker", "postgres", *OUTAGE_TARGETS)
"""Faults to choose, but not by default. Redis only speeds up dedupe, so its loss must cost
nothing. The broker (Apache Kafka, its log on disk) comes back with every record it
acknowledged: producers and consumers stall while it is down, nothing is published again;
with ``choreo up --brokers 3``, ``broker-2`` and ``broker-3`` are its other nodes, and one
node down stalls only the partitions it led, until another takes them over.
PostgreSQL is every service's database at once: services ride it out or are restarted,
orders-api answers 503 meanwhile, Connect's tasks come back on their own."""

LINK_MODES = ("blackhole", "reset", "slow")
"""Partitions: a link (``payments>postgres``, routed through a fault proxy with
``CHOREO_LINKS``) is cut in one of these ways for the fault's pause, both ends alive."""
LINK_DOWN_S = (3.0, 12.0)
"""A partition lasts longer than a crash's pause: long enough to meet every timeout that
a hang runs into (a blackholed connect, a query, a psp call)."""


def is_link(target: str) -> bool:
    service, _, dependency = target.partition(">")
    return service in manifest.linked() and dependency in LINK_DEPENDENCIES


PRICES_CENTS = (500, 1250, 1999, 4900, 15000)
"""One SKU per price: a handful of SKUs, so orders compete for the same units."""

WALLET = "wallet"
"""In place of a card token: the order is paid from the run customer's wallet."""
TOKENS = (("tok_ok", 0.55), ("tok_decline", 0.15), ("tok_flaky", 0.15), (WALLET, 0.15))
WALLET_FUNDING = 0.6
"""The run's wallet is topped up with this share of what its wallet orders would cost:
the balance runs out, and later wallet orders are declined."""
CANCEL_SHARE = 0.10
CANCEL_WITHIN_S = 3.0
SCARCITY = 0.5
"""Initial stock as a share of what the planned orders ask for: the shelves run empty."""


class PlanError(ValueError):
    """The parameters cannot make a run; said before anything is touched."""


@dataclass(frozen=True)
class OrderRequest:
    index: int
    lines: tuple[tuple[int, int], ...]
    """(SKU index, quantity) per line; SKU names are given at run time."""
    token: str
    cancel_after_s: float | None
    """When the customer cancels, counted from acceptance; None for never."""


@dataclass(frozen=True)
class Fault:
    at_s: float
    """Seconds after the load starts."""
    target: str
    down_s: float
    """How long the process stays dead before it is restarted (a link: stays cut)."""
    mode: str = ""
    """For a link: how it is cut (``LINK_MODES``)."""


@dataclass(frozen=True)
class Plan:
    seed: int
    rate: float
    order_deadline_s: float
    planned_orders: int
    """Orders in ``duration_s``; the load goes on past them while a fault is not over."""
    initial_stock: tuple[int, ...]
    faults: tuple[Fault, ...]

    def order(self, index: int) -> OrderRequest:
        """The ``index``-th request, the same for a seed however many a run ends up sending."""
        return plan_order(self.seed, index)

    def due_s(self, index: int) -> float:
        """When a request is sent: a steady rate, not a burst."""
        return index / self.rate


def check_targets(targets: tuple[str, ...]) -> None:
    """Known targets only: the defaults, the optional ones, and the replicas of a consumer
    service (``payments-2``; whether it runs is checked once the stack is up)."""
    for target in targets:
        if (target not in default_targets() + OPTIONAL_TARGETS and not is_consumer(target)
                and not is_broker_node(target) and not is_link(target)):
            raise PlanError(f"unknown target {target!r}; choose from"
                            f" {', '.join(default_targets() + OPTIONAL_TARGETS)}, a replica of a"
                            " consumer service (payments-2), a broker node (broker-2) or a"
                            " link (payments>postgres)")
    if not targets:
        raise PlanError("give at least one target")


def plan_order(seed: int, index: int) -> OrderRequest:
    """Each request from a generator of its own, so it does not depend on how many came before."""
    rng = random.Random(f"{seed}/order/{index}")
    tokens, weights = zip(*TOKENS, strict=True)
    skus = rng.sample(range(len(PRICES_CENTS)), rng.choice((1, 1, 2)))
    lines = tuple((sku, rng.randint(1, 3)) for sku in sorted(skus))
    token = rng.choices(tokens, weights)[0]
    cancel = rng.uniform(0, CANCEL_WITHIN_S) if rng.random() < CANCEL_SHARE else None
    return OrderRequest(index, lines, token, cancel)


def wallet_top_up_cents(plan: Plan) -> int:
    """What the run's customer is given: ``WALLET_FUNDING`` of its planned wallet orders."""
    spend = sum(PRICES_CENTS[sku] * quantity for order in map(plan.order,
                                                               range(plan.planned_orders))
                if order.token == WALLET for sku, quantity in order.lines)
    return max(1, int(spend * WALLET_FUNDING))


def initial_stock(orders: list[OrderRequest]) -> tuple[int, ...]:
    demand = [0] * len(PRICES_CENTS)
    for order in orders:
        for sku, quantity in order.lines:
            demand[sku] += quantity
    return tuple(max(1, int(units * SCARCITY)) for units in demand)


def plan_faults(rng: random.Random, duration_s: float, targets: tuple[str, ...],
                count: int) -> tuple[Fault, ...]:
    """``count`` faults spread over the load, each target before any repeats.

    One fault per time slot, at a random moment in the first half of its slot, so a
    restart (Connect takes about 5 s) usually ends before the next fault is due. The
    first and last seconds of the load stay quiet: the last fault must still find
    sagas in flight.
    """
    start, end = min(3.0, 0.1 * duration_s), duration_s - min(5.0, 0.1 * duration_s)
    slot = (end - start) / count
    order: list[str] = []
    while len(order) < count:
        order += rng.sample(targets, len(targets))
    return tuple(fault(rng, round(start + k * slot + rng.uniform(0, slot / 2), 2), order[k])
                 for k in range(count))


def fault(rng: random.Random, at_s: float, target: str) -> Fault:
    if is_link(target):
        return Fault(at_s, target, round(rng.uniform(*LINK_DOWN_S), 2), rng.choice(LINK_MODES))
    return Fault(at_s, target, round(rng.uniform(0.5, 2.5), 2))


def make_plan(seed: int, duration_s: float, rate: float, targets: tuple[str, ...],
              faults: int | None = None, order_deadline_s: float = 30.0) -> Plan:
    """By default one fault per ~6 s of load, and at least one per target."""
    check_targets(targets)
    if duration_s < 10 or rate <= 0:
        raise PlanError("a chaos run needs at least 10 s of load at a positive rate")
    count = faults if faults is not None else max(len(targets), int(duration_s / 6))
    planned = int(duration_s * rate)
    return Plan(seed, rate, order_deadline_s, planned,
                initial_stock([plan_order(seed, index) for index in range(planned)]),
                plan_faults(random.Random(seed), duration_s, targets, count) if count else ())
