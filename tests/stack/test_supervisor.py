"""The supervisor on a stack of its own: restarts, reports, gives up, and a lossless ``down``.

The stack is started exactly as a user does (``choreo up`` in a subprocess), so the
supervisor is the parent of every process and knows how each one ended.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import choreo.stack.supervisor as supervisor_module
from choreo.stack import launcher, restart
from choreo.stack.components import Component, port_is_free
from choreo.stack.processes import ProcessRegistry, TrackedProcess
from choreo.stack.settings import REPO_ROOT, StackSettings
from choreo.stack.supervision import SupervisorState, shape_changes, state_file
from choreo.stack.supervisor import Supervisor, backoff_s
from choreo.testkit.orders_client import saga_settled
from choreo.testkit.shop import Shop
from tests.conftest import PORT_OFFSET, TEST_ENV, ports_shifted_by
from tests.support import eventually, holds

pytestmark = pytest.mark.stack

OWN_PORTS = ports_shifted_by(PORT_OFFSET - 4500)
"""Apart from the session's stack and from the lifecycle test's (offset - 5000)."""
STATE_DIR = REPO_ROOT / ".choreo-test-supervisor"


def choreo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "choreo.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    # Deadlines far beyond a down and up on two busy cores: a saga in flight across them
    # must settle by its own path, and the 30 s default could run out while Connect
    # starts again, cancelling it as "timeout" although nothing was lost.
    env = {**os.environ, **TEST_ENV, **OWN_PORTS, "CHOREO_STATE_DIR": str(STATE_DIR),
           "CHOREO_ORDER_DEADLINE_S": "300", "CHOREO_RESERVATION_TTL_S": "600"}
    try:
        started = choreo(env, "up")
        assert started.returncode == 0, started.stdout + started.stderr
        yield env
    finally:
        launcher.down(StackSettings.from_env(env), report=lambda line: None)
        print(launcher.tail(STATE_DIR / "logs" / "supervisor.log", 60))  # shown on failure
        shutil.rmtree(STATE_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def settings(env: dict[str, str]) -> StackSettings:
    return StackSettings.from_env(env)


def recorded(settings: StackSettings) -> list[TrackedProcess]:
    registry = launcher.registry_for(settings)
    return [tracked for name in registry.names() if (tracked := registry.get(name))]


def test_up_runs_a_supervisor_and_a_second_up_changes_nothing(
        env: dict[str, str], settings: StackSettings) -> None:
    assert launcher.registry_for(settings).running("supervisor") is not None
    again = choreo(env, "up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert all(row.healthy and row.restarts == 0 for row in launcher.status(settings))


def test_up_with_another_relay_or_shape_is_refused_naming_the_variable(
        env: dict[str, str], settings: StackSettings) -> None:
    """Finding 7: with a supervisor running, ``up`` with a changed ``CHOREO_RELAY`` left
    the stack as it was and said nothing (from polling back to cdc, say)."""
    running = SupervisorState.load(state_file(settings))
    assert running is not None and running.shape["CHOREO_RELAY"] == "cdc"
    polled = SupervisorState(shape={**running.shape, "CHOREO_RELAY": "polling"})
    assert shape_changes(polled, settings) == ["CHOREO_RELAY='polling' -> 'cdc'"]
    assert shape_changes(running, settings) == []

    refused = choreo({**env, "CHOREO_RELAY": "polling"}, "up")
    assert refused.returncode == 2
    assert "CHOREO_RELAY='cdc' -> 'polling'" in refused.stderr, refused.stderr
    assert all(row.healthy and row.restarts == 0 for row in launcher.status(settings))


def test_sigkilled_service_is_restarted_and_status_says_how_it_ended(
        env: dict[str, str], settings: StackSettings) -> None:
    registry = launcher.registry_for(settings)
    before = registry.running("payments")
    assert before is not None
    registry.kill("payments")

    def restarted() -> None:
        row = next(row for row in launcher.status(settings) if row.name == "payments")
        assert row.healthy and row.pid != before.pid
        assert (row.restarts, row.last_exit, row.gave_up) == (1, "signal SIGKILL", False)

    eventually(restarted, timeout_s=90)
    shown = choreo(env, "status")
    line = next(line for line in shown.stdout.splitlines() if line.startswith("payments"))
    assert line.split()[-3:] == ["1", "signal", "SIGKILL"], shown.stdout
    assert "supervisor: pid" in shown.stdout


def test_sigkilled_broker_is_restarted_with_its_topics_and_connect_and_sagas_go_on(
        settings: StackSettings) -> None:
    """The broker comes back with its log and Connect keeps running: sagas go on."""
    registry = launcher.registry_for(settings)
    launcher.registry_for(settings).kill("broker")

    def everything_back() -> None:
        rows = {row.name: row for row in launcher.status(settings)}
        assert all(row.healthy for row in rows.values()), rows
        assert (rows["broker"].restarts, rows["broker"].last_exit) == (1, "signal SIGKILL")
        assert registry.running("connect") is not None

    eventually(everything_back, timeout_s=120)
    shop = Shop(settings)
    sku = shop.new_sku(5)
    order = shop.wait_terminal(shop.place(sku, 1))
    shop.psp.close()
    assert order["status"] == "CONFIRMED", order


def test_down_mid_saga_loses_nothing_and_every_saga_settles_after_up(
        env: dict[str, str], settings: StackSettings) -> None:
    """Sagas in flight when ``down`` begins finish by their own path, none by timeout.

    A timeout would mean an event was lost with the broker's memory and the order's
    deadline cleaned up after it: the sagas still settle, but not as they should.
    """
    shop = Shop(settings)
    stock = 30
    sku = shop.new_sku(stock, 700)
    tokens = ["tok_decline" if index % 4 == 0 else "tok_ok" for index in range(40)]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda token: shop.place(sku, 1, token), tokens))
    in_flight = sum(shop.api.get(order_id)["status"] == "PENDING" for order_id in ids)
    pids = recorded(settings)
    stopped = choreo(env, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert "drain: consumers caught up" in stopped.stdout, stopped.stdout
    assert not [p.name for p in pids if p.alive()], stopped.stdout
    assert in_flight > 0, "every saga had settled before down began: nothing was tested"

    assert choreo(env, "up").returncode == 0
    orders = {order_id: shop.wait_for(order_id, saga_settled, timeout_s=90) for order_id in ids}
    reasons = [order.get("reason") for order in orders.values()]
    assert "timeout" not in reasons, reasons
    confirmed = [order_id for order_id, order in orders.items()
                 if order["status"] == "CONFIRMED"]
    final = eventually(lambda: check_stock(shop, sku, stock, len(confirmed)))
    assert final["reserved"] == 0
    for order_id, order in orders.items():
        captured, refunded = shop.net_paid(order_id)
        expected = order["total_cents"] if order["status"] == "CONFIRMED" else 0
        assert captured - refunded == expected, (order_id, order["status"])
    shop.psp.close()


def check_stock(shop: Shop, sku: str, initial: int, sold: int) -> dict[str, int]:
    now = shop.stock(sku)
    assert now["available"] + now["reserved"] + now["sold"] == initial, now
    assert (now["reserved"], now["sold"]) == (0, sold), now
    return now


def test_down_stops_everything_even_after_the_supervisor_was_sigkilled(
        env: dict[str, str], settings: StackSettings) -> None:
    registry = launcher.registry_for(settings)
    registry.kill("supervisor")
    pids = recorded(settings)
    assert {p.name for p in pids} >= {"supervisor", "postgres", "connect", "orders-api"}
    assert choreo(env, "down").returncode == 0
    assert not [p.name for p in pids if p.alive()]
    assert not registry.names()


def test_backoff_doubles_from_half_a_second() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def free_port(skip: int = 0) -> int:
    """The first free port of this test's range, or the one ``skip`` free ports later."""
    free = (port for port in range(20500 + PORT_OFFSET, 21000 + PORT_OFFSET)
            if port_is_free(port))
    for _ in range(skip):
        next(free)
    return next(free)


@dataclass(frozen=True)
class Supervised:
    supervisor: Supervisor
    registry: ProcessRegistry
    lines: list[str]
    """What the supervisor reported."""


@contextmanager
def supervising(tmp_path: Path, name: str,
                components_of: Callable[[ProcessRegistry], list[Component]],
                env: dict[str, str] | None = None,
                restart_with: Callable[[ProcessRegistry], dict[str, Callable[[], None]]]
                | None = None) -> Iterator[Supervised]:
    """A supervisor thread over real processes of its own (state in ``.choreo-test-NAME``),
    each started first; everything stopped by pid and removed at the end.
    ``restart_with``: restarters by name, as the broker's nodes and Connect have."""
    state = REPO_ROOT / f".choreo-test-{name}"
    settings = StackSettings.from_env({"CHOREO_STATE_DIR": str(state), **OWN_PORTS,
                                       **(env or {})})
    registry = launcher.registry_for(settings)
    components = components_of(registry)
    lines: list[str] = []
    state.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(settings, components, lines.append, tmp_path / "state.json",
                            restart_with(registry) if restart_with else {})
    for component in components:
        registry.start(component.name, component.command)
    watcher = threading.Thread(target=supervisor.run, daemon=True)
    watcher.start()
    try:
        yield Supervised(supervisor, registry, lines)
    finally:
        supervisor.stop_requested.set()
        watcher.join()
        for component in components:
            registry.stop(component.name)
        shutil.rmtree(state, ignore_errors=True)


SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_a_process_that_crashes_at_once_is_given_up_on_and_reported(tmp_path: Path) -> None:
    """A real process that exits with code 3 on every start: five exits, then no more."""
    crasher = Component("crasher", free_port(),
                        [sys.executable, "-c", "import sys, time; time.sleep(0.2); sys.exit(3)"],
                        lambda: False)
    with supervising(tmp_path, "crashloop", lambda registry: [crasher]) as run:
        record = run.supervisor.state.processes["crasher"]
        eventually(lambda: holds(record.gave_up, run.lines), timeout_s=60)
        assert (record.restarts, record.last_exit) == (4, "code 3")
        time.sleep(1)
        assert record.restarts == 4, "restarted after giving up"
        assert any(line.startswith("giving up on crasher: 5 exits within 60s")
                   for line in run.lines)
        saved = json.loads((tmp_path / "state.json").read_text())
        assert saved["processes"]["crasher"]["gave_up"] is True


def test_a_process_that_never_becomes_healthy_is_given_up_on_however_slow_each_try(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alive but never healthy: each restart fails only at the start-up timeout (90 s on a
    real stack), longer than the crash-loop window, so counting exits in the window alone
    retried it forever. The window is shrunk below one try here to stand for that."""
    monkeypatch.setattr(supervisor_module, "WINDOW_S", 0.05)
    sulker = Component("sulker", free_port(), SLEEPER, lambda: False)
    with supervising(tmp_path, "sulker", lambda registry: [sulker],
                     {"CHOREO_START_TIMEOUT_S": "0.3"}) as run:
        run.registry.kill(sulker.name)
        record = run.supervisor.state.processes["sulker"]
        eventually(lambda: holds(record.gave_up, run.lines), timeout_s=40)
        assert record.restarts == 5, run.lines
        assert (record.last_exit or "").startswith("restart failed: not healthy"), run.lines
        assert any(line.startswith("giving up on sulker: 5 restarts in a row never became"
                                   " healthy") for line in run.lines), run.lines
        assert run.registry.running(sulker.name) is None, "left running after giving up"
        time.sleep(1)
        assert record.restarts == 5, "restarted after giving up"


def test_a_restart_waiting_for_health_does_not_hold_up_the_restart_of_what_it_needs(
        tmp_path: Path) -> None:
    """The storm's stall: psp restarted, then PostgreSQL killed while psp waited to be
    healthy (it never is without its database). PostgreSQL must come back at once, not
    after psp's start-up timeout."""
    def components(registry: ProcessRegistry) -> list[Component]:
        def database_runs() -> bool:
            return registry.running("database") is not None

        return [Component("database", free_port(), SLEEPER, database_runs, needed_first=True),
                Component("service", free_port() + 1, SLEEPER, database_runs)]

    with supervising(tmp_path, "dependency", components) as run:
        run.registry.kill("service")
        time.sleep(0.3)
        run.registry.kill("database")  # while the service's restart is due or waiting

        def both_back() -> None:
            assert run.registry.running("database") and run.registry.running("service"), \
                run.lines
            assert all(c.due is None and c.starting is None
                       for c in run.supervisor.children), run.lines
        eventually(both_back, timeout_s=15)
        assert run.supervisor.state.processes["database"].restarts == 1, run.lines


def database_and(other: Component) -> Callable[[ProcessRegistry], list[Component]]:
    """A database the supervisor restarts in its loop, and ``other``."""
    def components(registry: ProcessRegistry) -> list[Component]:
        return [Component("database", free_port(), SLEEPER,
                          lambda: registry.running("database") is not None, needed_first=True),
                other]
    return components


def back_within(run: Supervised, name: str, timeout_s: float) -> float:
    killed = time.monotonic()
    run.registry.kill(name)
    eventually(lambda: holds(run.registry.running(name) is not None, run.lines),
               timeout_s=timeout_s)
    return time.monotonic() - killed


SLOW_S = 20.0
"""How long the slow restart or drain below takes: far beyond the database's restart."""


def test_a_slow_connect_restart_does_not_hold_up_the_database(tmp_path: Path) -> None:
    """Issue 21: Connect's restart waits up to 90 s per connector for RUNNING, and the
    loop restarted nothing else meanwhile: a PostgreSQL killed then stayed down."""
    connect = Component("connect", free_port(skip=1), SLEEPER, lambda: True)

    def restarters(registry: ProcessRegistry) -> dict[str, Callable[[], None]]:
        def slow_connect() -> None:
            time.sleep(SLOW_S)  # its connectors coming up
            registry.start("connect", SLEEPER)
        return {"connect": slow_connect}

    with supervising(tmp_path, "slowchain", database_and(connect),
                     restart_with=restarters) as run:
        run.registry.kill("connect")
        eventually(lambda: holds(run.supervisor.children[1].busy is not None, run.lines))
        took = back_within(run, "database", SLOW_S / 2)
        assert run.supervisor.children[1].busy is not None, "Connect's restart is not slow"
        print(f"\ndatabase back {took:.1f}s after its kill, during a {SLOW_S:.0f}s Connect"
              " restart")
        eventually(lambda: holds(run.registry.running("connect") is not None
                                 and run.supervisor.children[1].busy is None, run.lines),
                   timeout_s=SLOW_S * 2)
        assert run.supervisor.state.processes["connect"].restarts == 1, run.lines


def test_a_requested_restart_draining_does_not_hold_up_the_database(tmp_path: Path) -> None:
    slow_to_drain = [sys.executable, "-c", "import signal, sys, time; signal.signal("
                     f"signal.SIGTERM, lambda *_: (time.sleep({SLOW_S}), sys.exit(0)));"
                     " time.sleep(600)"]
    service = Component("service", free_port(skip=1), slow_to_drain, lambda: True)
    with supervising(tmp_path, "slowdrain", database_and(service)) as run:
        settings = run.supervisor.settings
        pid = run.registry.running("service").pid
        time.sleep(0.5)  # its SIGTERM handler is in place
        restart.request(settings, "service", pid, drain_timeout_s=SLOW_S * 2)
        eventually(lambda: holds(run.supervisor.children[1].busy is not None, run.lines))
        took = back_within(run, "database", SLOW_S / 2)
        assert run.supervisor.children[1].busy is not None, "the drain is not slow"
        print(f"\ndatabase back {took:.1f}s after its kill, during a {SLOW_S:.0f}s drain")
        answer = restart.await_answer(settings, run.registry, "service", SLOW_S * 3)
        assert answer.error is None and answer.new_pid not in (None, pid), answer
        assert run.supervisor.state.processes["service"].requested_restarts == 1
