"""``choreo restart``: a rolling restart of every service under steady load loses nothing.

The session stack is started from this test process, so it is the parent of every
service and learns each one's exit status: a drained stop exits with status 0, a killed
one with a signal. Orders go in at a steady rate for the whole roll, through the same
client the chaos runs use (it retries with the same Idempotency-Key while orders-api is
restarting); afterwards the chaos run's invariants that apply must hold.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from choreo.chaos import invariants
from choreo.chaos.load import Placed
from choreo.chaos.plan import OrderRequest
from choreo.chaos.quiescence import wait_quiescent
from choreo.stack import launcher, restart
from choreo.stack.services import service_components
from choreo.stack.settings import StackSettings
from choreo.stack.supervisor import Supervisor
from choreo.testkit.observer import Observer
from choreo.testkit.orders_client import Attempts, OrdersClient
from choreo.testkit.shop import Shop

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]

RATE = 3.0
"""Orders per second, for the whole roll."""
STOCK = 10_000
SETTLE_S = 120.0

CHECKS = (
    invariants.edge_exactly_once, invariants.termination, invariants.stock_conserved,
    invariants.nothing_negative, invariants.nothing_reserved,
    invariants.sold_matches_confirmed, invariants.one_capture_per_order,
    invariants.money_per_order, invariants.money_balances, invariants.effectively_once,
    invariants.no_dead_letters,
)


class SteadyLoad:
    """Places one order every ``1 / RATE`` s until stopped, each retried until answered."""

    def __init__(self, settings: StackSettings, skus: list[str], customer: str) -> None:
        self.client = OrdersClient(settings.port_of("orders-api"), give_up_s=90.0)
        self.skus = skus
        self.customer = customer
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(16)
        self.sent: list[tuple[OrderRequest, str, Future[tuple[Attempts, float]]]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def place(self, request: OrderRequest, key: str) -> tuple[Attempts, float]:
        sku, quantity = request.lines[0]
        started = time.monotonic()
        attempts = self.client.submit(key, {"customer_id": self.customer, "payment_token":
                                            request.token,
                                            "items": [{"sku": self.skus[sku],
                                                       "quantity": quantity}]})
        return attempts, time.monotonic() - started

    def run(self) -> None:
        index = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            request = OrderRequest(index, ((index % len(self.skus), 1 + index % 2),),
                                   "tok_ok", None)
            key = f"restart-{uuid.uuid4()}"
            self.sent.append((request, key, self.pool.submit(self.place, request, key)))
            index += 1
            next_at += 1 / RATE
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def finish(self) -> tuple[list[Placed], float]:
        """Every request answered, and the longest time one took (retries included)."""
        self.stop.set()
        self.thread.join()
        results = [(request, key, future.result()) for request, key, future in self.sent]
        self.pool.shutdown()
        self.client.close()
        placed = [Placed(request, key, attempts) for request, key, (attempts, _) in results]
        return placed, max((took for _, _, (_, took) in results), default=0.0)


def test_rolling_restart_of_every_service_under_load_loses_and_repeats_nothing(
        running_services: StackSettings) -> None:
    settings = running_services
    shop = Shop(settings)
    skus = [shop.new_sku(STOCK) for _ in range(3)]
    customer = f"restart-{uuid.uuid4().hex[:8]}"
    observer = Observer(settings, shop, customer, skus)
    load = SteadyLoad(settings, skus, customer)
    load.thread.start()
    time.sleep(3.0)
    try:
        restarted = restart.rolling_restart(settings, restart.order(), report=print,
                                            supervised=False)
        time.sleep(3.0)
    finally:
        placed, slowest_placement = load.finish()
    accepted = sum(p.order_id is not None for p in placed)
    quiescence_s = wait_quiescent(observer, accepted, time.monotonic(), SETTLE_S, print)
    evidence = invariants.Evidence(
        placed=placed, final=observer.snapshot(with_money=True),
        initial_stock=dict.fromkeys(skus, STOCK), unbalanced_samples=[],
        negative_samples=[], samples=0, quiescence_s=quiescence_s, bound_s=SETTLE_S,
        faults=[])
    checks = [check(evidence) for check in CHECKS]
    longest = max(restarted, key=lambda r: r.took_s)
    print(f"{len(placed)} orders placed at {RATE:.0f}/s during the roll, {accepted} accepted;"
          f" longest stall: {longest.cycle.name} {longest.took_s:.1f}s from SIGTERM to"
          f" consuming/answering; slowest placement {slowest_placement:.1f}s")
    for check in checks:
        print(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}"
              + "".join(f"\n    {failure}" for failure in check.failures))
    assert [r.cycle.name for r in restarted] == list(restart.order())
    # Drained, not killed: a kill after the drain bound is an error whoever started the
    # process; its exit status is known only where this test process is its parent (other
    # tests' supervisors may have restarted some services before), and then it is 0.
    assert [(r.cycle.name, r.cycle.error) for r in restarted if r.cycle.error] == []
    assert {r.cycle.exit for r in restarted} <= {"code 0", "unknown"}
    assert all(r.cycle.new_pid != r.cycle.old_pid for r in restarted)
    assert [check.name for check in checks if not check.passed] == []
    assert accepted == len(placed) > 0


def test_with_a_supervisor_it_restarts_on_request_once_and_counts_no_exit(
        running_services: StackSettings, tmp_path: Path) -> None:
    """The supervisor is asked, stops and starts the process itself, and nothing else
    starts it: one new pid, no exit counted, no backoff."""
    settings = running_services
    registry = launcher.registry_for(settings)
    lines: list[str] = []
    supervisor = Supervisor(settings, service_components(settings), lines.append,
                            state_path=tmp_path / "supervisor.json", restart_with={})
    watching = threading.Thread(target=supervisor.run, daemon=True)
    watching.start()
    try:
        before = registry.running("inventory")
        assert before is not None
        [done] = restart.rolling_restart(settings, ["inventory"], report=print,
                                         supervised=True)
        time.sleep(2.0)  # a double start would show as another pid, or as an exit
        after = registry.running("inventory")
    finally:
        supervisor.stop_requested.set()
        watching.join(10)
    child = next(c for c in supervisor.children if c.component.name == "inventory")
    print("\n".join(lines))
    assert done.cycle.old_pid == before.pid and done.cycle.exit == "code 0"
    assert after is not None and after.pid == done.cycle.new_pid != before.pid
    assert (child.record.requested_restarts, child.record.restarts, len(child.exits)) == (1, 0, 0)
    assert child.record.last_exit == "code 0 (requested restart)"


def test_infrastructure_and_unknown_names_are_refused(stack_settings: StackSettings) -> None:
    for name in ("postgres", "broker", "nope"):
        with pytest.raises(restart.ConfigError):
            restart.plan(stack_settings, [name], every=False)
    assert restart.plan(stack_settings, [], every=True) == list(restart.order())
