"""One chaos run: orders at a steady rate, SIGKILLs at random moments, then the verdict.

The run owns its SKUs and its customer (registered with the users service, an email
address to be told on, a wallet topped up for part of its wallet orders), so it can
share a stack with other work and still check exact figures: every order, SKU, psp
charge, wallet entry and message it looks at is its own.
Whatever happens, it leaves every process of the stack running again.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from choreo.chaos.faults import FaultInjector, FaultRecord
from choreo.chaos.invariants import Evidence, check_all
from choreo.chaos.load import Load, Placed
from choreo.chaos.plan import (
    PRICES_CENTS,
    PlanError,
    default_targets,
    is_link,
    make_plan,
    wallet_top_up_cents,
)
from choreo.chaos.quiescence import wait_quiescent
from choreo.chaos.report import ChaosReport
from choreo.chaos.sampler import StockSampler
from choreo.stack import launcher
from choreo.stack.broker import is_broker_node
from choreo.stack.settings import StackSettings, split_replica
from choreo.stack.supervision import SUPERVISOR
from choreo.testkit.observer import Observer
from choreo.testkit.orders_client import OrdersClient
from choreo.testkit.shop import Shop

Report = Callable[[str], None]
SETTLE_MARGIN_S = 40.0
"""Beyond the order deadline: restarts of what was killed and the compensations that
follow a timeout."""
PROGRESS_EVERY_S = 5.0


def progress(load: Load, injector: FaultInjector, started: float, done: threading.Event,
             report: Report) -> None:
    faults = len(load.plan.faults)
    while not done.wait(PROGRESS_EVERY_S):
        answered, accepted = load.progress()
        report(f"  t={time.monotonic() - started:6.1f}s  {answered} answered,"
               f" {accepted} accepted, {len(injector.records)}/{faults} faults")


@dataclass(frozen=True)
class Driven:
    placed: list[Placed]
    faults: list[FaultRecord]
    load_s: float
    last_fault_over: float
    """``time.monotonic()`` when the last killed process was healthy again (or the load
    stopped, without faults): where the termination bound starts."""
    sampler: StockSampler


def drive(settings: StackSettings, load: Load, observer: Observer, initial: dict[str, int],
          report: Report, supervised: bool = False) -> Driven:
    """Load, faults and the stock sampler side by side; every process running at the end."""
    started = time.monotonic()
    injector = FaultInjector(settings, load.plan, started, report, supervised)
    sampler = StockSampler(observer, initial, started)
    done = threading.Event()
    ticker = threading.Thread(target=progress, args=(load, injector, started, done, report),
                              daemon=True)
    for thread in (sampler, injector, ticker):
        thread.start()
    try:
        placed = load.run(started, injector.is_alive)
        injector.join()
    except BaseException:
        sampler.stop()
        raise
    finally:
        done.set()
        injector.stop()
        launcher.up(settings, report=lambda line: report(f"  after the run: {line}"))
    stopped = time.monotonic()
    last_fault_over = started + injector.last_recovery_s if injector.records else stopped
    report(f"  t={stopped - started:6.1f}s  load stopped; the last fault was over at"
           f" t={last_fault_over - started:.1f}s")
    return Driven(placed, injector.records, stopped - started, last_fault_over, sampler)


def check_running(settings: StackSettings, targets: Sequence[str]) -> None:
    """A replica or a broker node named as a target must run (``choreo up --replicas``,
    ``--brokers``): killing nothing would pass every check and prove nothing."""
    registry = launcher.registry_for(settings)
    missing = [target for target in targets
               if (split_replica(target)[1] > 1 or is_broker_node(target))
               and registry.running(target) is None]
    if missing:
        raise PlanError(f"{', '.join(missing)} not running; start the replicas with"
                        " `choreo up --replicas SERVICE=N,...` (CHOREO_REPLICAS), the broker's"
                        " nodes with `choreo up --brokers N` (CHOREO_BROKERS)")
    routed = [f"{service}>{dependency}" for service, dependency in settings.link_pairs()]
    unrouted = [target for target in targets if is_link(target) and target not in routed]
    if unrouted:
        raise PlanError(f"{', '.join(unrouted)} not routed through a fault proxy; start the"
                        f" stack with CHOREO_LINKS={','.join(routed + unrouted)} (`choreo up`"
                        " restarts what it changes)")


def run_chaos(settings: StackSettings, duration_s: float, rate: float, seed: int,
              targets: Sequence[str] | None = None, report: Report = print, *,
              faults: int | None = None, order_deadline_s: float = 30.0,
              bound_s: float | None = None, supervised: bool = False) -> ChaosReport:
    """Run, wait for quiescence, check every invariant, print the report and return it.

    ``faults`` defaults to one per ~6 s of load (at least one per target); ``bound_s``
    (how long quiescence may take after the last fault) to the order deadline plus 40 s.
    ``supervised`` starts a supervisor if none runs and leaves every restart to it (the
    fault's pause is then not used); the supervisor keeps running after the run.
    """
    targets = tuple(targets or default_targets())
    plan = make_plan(seed, duration_s, rate, targets, faults, order_deadline_s)
    bound = bound_s if bound_s is not None else order_deadline_s + SETTLE_MARGIN_S
    launcher.up(settings, report=lambda line: report(f"  {line}"), supervised=supervised)
    check_running(settings, targets)
    supervised = supervised or launcher.registry_for(settings).running(SUPERVISOR) is not None
    shop = Shop(settings)
    run = f"chaos-{uuid.uuid4().hex[:10]}"
    buyer = shop.register(f"{run}@example.org")
    funds = wallet_top_up_cents(plan)
    shop.top_up(buyer, funds)
    shop.wait_known_to_notification(buyer)
    skus = [shop.new_sku(units, price) for units, price in zip(plan.initial_stock,
                                                               PRICES_CENTS, strict=True)]
    initial = dict(zip(skus, plan.initial_stock, strict=True))
    observer = Observer(settings, shop, buyer, skus)
    report(f"{run}: {plan.planned_orders} orders over {duration_s:g}s (more while a fault is"
           f" not over), faults on {', '.join(targets)}")
    try:
        customer = OrdersClient(settings.port_of("orders-api"), give_up_s=60.0)
        driven = drive(settings, Load(plan, skus, customer, buyer), observer, initial, report,
                       supervised)
        accepted = sum(p.order_id is not None for p in driven.placed)
        try:
            quiescence_s = wait_quiescent(observer, accepted, driven.last_fault_over, bound,
                                          report)
        finally:
            driven.sampler.stop()
        final = observer.snapshot(with_money=True)
    finally:
        shop.psp.close()
    sampler = driven.sampler
    checks = check_all(Evidence(driven.placed, final, initial, sampler.unbalanced,
                                sampler.negative, sampler.samples, quiescence_s, bound,
                                driven.faults, funds))
    result = ChaosReport(seed, run, duration_s, driven.load_s, rate, order_deadline_s, initial,
                         driven.faults, driven.placed, final.orders, quiescence_s, bound,
                         checks)
    for line in result.lines():
        report(line)
    return result
