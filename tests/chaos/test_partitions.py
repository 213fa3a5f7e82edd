"""Faults that are not crashes: links between a service and PostgreSQL, Redis or the psp
blackholed, reset or slowed (``CHOREO_LINKS``, ``stack.links``) mixed with SIGKILLs, on
a stack of its own, and every invariant must hold.

The first such run (payments>postgres blackholed) left payments consuming nothing for as
long as anyone looked: its loop waited for ever on an unanswered lease query, and after
that was bounded (``outbox.watchdog``), PostgreSQL kept the old session, with every
partition lease, behind a link the proxy had closed but not shut down.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from choreo.chaos.plan import PlanError
from choreo.chaos.run import check_running
from choreo.stack import links
from choreo.stack.settings import StackSettings
from tests.support import chaos_checked, own_stack

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900)]

PORT_SHIFT = -4000
"""Apart from the session's stack, the supervisor test's (-4500) and lifecycle's (-5000)."""
LINKS = ("payments>postgres", "payments>psp", "inventory>redis", "orders-worker>postgres",
         "wallet-worker>postgres", "notification>notifier")


@pytest.fixture(scope="module")
def linked() -> Iterator[StackSettings]:
    yield from own_stack("partitions", PORT_SHIFT, CHOREO_LINKS=",".join(LINKS))


def test_partitions_and_crashes_mixed_hold_every_guarantee(linked: StackSettings) -> None:
    assert links.modes(linked) == dict.fromkeys(LINKS, "pass")
    result = chaos_checked(linked, (*LINKS, "payments"), duration_s=40, rate=10, seed=5)
    cut = [record for record in result.faults if ">" in record.fault.target]
    assert {record.fault.mode for record in cut} <= {"blackhole", "reset", "slow"}
    assert links.modes(linked) == dict.fromkeys(LINKS, "pass")


def test_the_control_endpoint_names_what_is_wrong(linked: StackSettings) -> None:
    url = links.control_url(linked)
    unknown = requests.put(f"{url}/payments>broker", json={"mode": "reset"}, timeout=5)
    assert unknown.status_code == 400 and "payments>postgres" in unknown.json()["error"]
    bad_mode = requests.put(f"{url}/payments>psp", json={"mode": "flaky"}, timeout=5)
    assert bad_mode.status_code == 400 and "blackhole" in bad_mode.json()["error"]


def test_a_link_target_the_stack_does_not_route_is_refused(tmp_path: Path) -> None:
    settings = replace(StackSettings.from_env({"CHOREO_STATE_DIR": str(tmp_path)}),
                       links="payments>postgres")
    check_running(settings, ["payments>postgres", "payments"])
    with pytest.raises(PlanError, match="CHOREO_LINKS=payments>postgres,inventory>redis"):
        check_running(settings, ["inventory>redis"])
