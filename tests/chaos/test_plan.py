"""The chaos plan: the same seed asks the same of the system; out-of-scope faults refused."""

from __future__ import annotations

import pytest

from choreo.chaos.plan import PlanError, default_targets, make_plan

TARGETS = default_targets()


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert make_plan(7, 40, 25, TARGETS) == make_plan(7, 40, 25, TARGETS)
    assert make_plan(7, 40, 25, TARGETS) != make_plan(8, 40, 25, TARGETS)


def test_every_target_is_hit_before_any_repeats_and_faults_stay_inside_the_load() -> None:
    plan = make_plan(3, 60, 20, TARGETS, faults=len(TARGETS) + 2)
    assert {fault.target for fault in plan.faults[:len(TARGETS)]} == set(TARGETS)
    times = [fault.at_s for fault in plan.faults]
    assert times == sorted(times)
    assert times[0] > 0 and times[-1] < 60


def test_orders_at_the_rate_with_every_token_and_some_cancels() -> None:
    plan = make_plan(1, 40, 25, TARGETS)
    orders = [plan.order(index) for index in range(plan.planned_orders)]
    assert len(orders) == 1000
    assert plan.due_s(999) == pytest.approx(39.96)
    assert {order.token for order in orders} == {"tok_ok", "tok_decline", "tok_flaky", "wallet"}
    assert 50 < sum(order.cancel_after_s is not None for order in orders) < 150


def test_an_order_does_not_depend_on_how_many_a_run_sends() -> None:
    short, long = make_plan(1, 20, 25, TARGETS), make_plan(1, 60, 25, TARGETS)
    assert [short.order(i) for i in range(600)] == [long.order(i) for i in range(600)]


def test_stock_is_scarce() -> None:
    plan = make_plan(1, 40, 25, TARGETS)
    demand = sum(quantity for index in range(plan.planned_orders)
                 for _, quantity in plan.order(index).lines)
    assert sum(plan.initial_stock) < demand


@pytest.mark.parametrize("target", ["broker", "postgres", "redis"])
def test_optional_targets_are_accepted_but_not_default(target: str) -> None:
    assert target not in TARGETS
    assert make_plan(1, 40, 25, (target,)).faults[0].target == target


def test_unknown_target_refused() -> None:
    with pytest.raises(PlanError, match="unknown target 'kafka'"):
        make_plan(1, 40, 25, ("kafka",))
