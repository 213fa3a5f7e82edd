"""The whole saga, end to end: ``POST /orders`` -> ... -> the order's terminal status.

Where bench/hop.py times one outbox hop, this drives the public HTTP API the way clients
do and times what a customer waits for: from the order's creation to CONFIRMED, through
every hop of a successful card saga (OrderPlaced -> StockReserved -> PaymentCaptured ->
OrderConfirmed), in two runs. The customer is registered and wants email, so the CPU
figures include notification sending one message per order (and the wallet crediting
points), as they would for a real customer:

- steady: an open-loop schedule (request n is due at start + n/rate whatever happened to
  the earlier ones), so a slow server does not quietly lower the offered rate; HTTP
  requests in flight are capped at ``concurrency`` and a request that waits for a free
  slot has that wait counted in its 202 latency (no coordinated omission).
- max: ``concurrency`` sagas kept in flight, a new order placed as soon as one settles.
  An unbounded HTTP flood would only measure the intake: the pipeline falls behind, the
  backlog outlives the order deadline and the sweeper cancels it, which says nothing
  about how many sagas per second the system completes.

Saga latency is the order's terminal history row's ``seen_at`` minus the order's
``created_at``. Both are PostgreSQL's ``now()`` (the start of the transaction that wrote
them) on the same clock, so the figure depends neither on client clocks nor on how often
the client looks; ``updated_at`` would give the same value for these orders, but it moves
again if a confirmed order is later cancelled, while the first terminal history row never
changes. The orders are watched by one batched query on the orders database rather than
by ``GET /orders/{id}`` per order, so watching does not load the API under test.

Every run is bounded in count (``MAX_ORDERS``) and time (load for the given seconds, then
at most the order deadline plus a margin to let the sagas in flight settle).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import aiohttp
import psycopg

from choreo.services.inventory import catalog
from choreo.services.inventory.catalog import CatalogItem
from choreo.services.orders import store as orders_store
from choreo.stack import launcher
from choreo.stack.cpu import CpuMeter, CpuUsage, print_per_unit
from choreo.stack.errors import ConfigError
from choreo.stack.services import service_components
from choreo.stack.settings import StackSettings, split_replica
from choreo.testkit.shop import Shop

SKUS = tuple(f"bench-saga-{i:02d}" for i in range(16))
"""Several SKUs, so that concurrent reservations do not all queue on one stock row lock."""
STOCK_FLOOR = 1_000_000
"""Units each bench SKU is topped up to before a run, so that every saga can confirm."""
MAX_ORDERS = 100_000
"""Hard cap on orders per run, whatever the rate and duration."""
HTTP_TIMEOUT_S = 10.0
SETTLE_MARGIN_S = 15.0
"""Beyond the order deadline, for the deadline sweeper to end what is still pending."""
QUIET_S = 3.0
"""No new saga history for this long means the previous run's tail has drained."""
QUIET_TIMEOUT_S = 120.0
TERMINAL_EVENTS = ["OrderConfirmed", "OrderRejected", "OrderCancelled"]
BAR_WIDTH = 30

@dataclass
class Saga:
    status: str
    created_at: datetime
    settled_at: datetime

    @property
    def latency_ms(self) -> float:
        return (self.settled_at - self.created_at).total_seconds() * 1000


@dataclass
class SagaRun:
    label: str
    sent: int = 0
    accepted_ms: list[float] = field(default_factory=list)
    http_errors: Counter[str] = field(default_factory=Counter)
    pending: set[str] = field(default_factory=set)
    settled: dict[str, Saga] = field(default_factory=dict)
    load_seconds: float = 0.0
    cpu: CpuUsage | None = None
    """CPU by component from the first order to the last settlement (or the bound)."""

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(saga.status for saga in self.settled.values())

    def per_second(self) -> tuple[float, float]:
        """Settled and confirmed sagas per second over the span from the first order's
        creation to the last settlement: both ends on the server's clock, and a backlog
        still draining after the load is counted, so an overload cannot flatter it."""
        sagas = self.settled.values()
        if not sagas:
            return 0.0, 0.0
        first = min(saga.created_at for saga in sagas)
        span = (max(saga.settled_at for saga in sagas) - first).total_seconds()
        if span <= 0:
            return 0.0, 0.0
        return len(sagas) / span, sum(saga.status == "CONFIRMED" for saga in sagas) / span

    def latency_ms(self, p: float) -> float:
        """The p-th percentile of the settled sagas' latency."""
        return percentile([saga.latency_ms for saga in self.settled.values()], p)

    def accepted_per_second(self) -> float:
        return len(self.accepted_ms) / self.load_seconds if self.load_seconds else 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def stock_bench_skus(settings: StackSettings) -> None:
    """Create the bench SKUs, or top them up: an operator's restock, as set_stock does."""
    with psycopg.connect(settings.database_dsn("inventory")) as conn:
        catalog.stock_up(conn, [CatalogItem(sku, "saga benchmark item", 100, STOCK_FLOOR)
                                for sku in SKUS])


async def quiesce(conn: psycopg.AsyncConnection[Any]) -> None:
    """Wait (bounded) until no saga history has been written for ``QUIET_S``.

    A run that overloaded the pipeline leaves a tail behind it: refunds and stock
    releases of the orders the deadline cancelled. Every such event ends as a history
    row of its order, so a quiet history means the next run starts on an idle stack
    instead of queueing behind the last one's compensations.
    """
    started = last_change = time.monotonic()
    last_row = None
    while time.monotonic() - last_change < QUIET_S:
        if time.monotonic() - started > QUIET_TIMEOUT_S:
            sys.stderr.write(f"the stack was not idle after {QUIET_TIMEOUT_S:.0f}s: "
                             "figures include other traffic\n")
            return
        row = await (await conn.execute(orders_store.LAST_HISTORY_SEQ)).fetchone()
        if row != last_row:
            last_row, last_change = row, time.monotonic()
        await asyncio.sleep(0.5)


class Watcher:
    """Moves this run's orders from pending to settled by polling the orders database."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], run: SagaRun, interval_s: float,
                 on_settled: Callable[[int], None]) -> None:
        self.conn = conn
        self.run = run
        self.interval_s = interval_s
        self.on_settled = on_settled

    async def loop(self) -> None:
        while True:
            if self.run.pending:
                query = (orders_store.SETTLED_AMONG, (TERMINAL_EVENTS, list(self.run.pending)))
                rows = await (await self.conn.execute(*query)).fetchall()
                for order_id, status, created_at, settled_at in rows:
                    self.run.pending.discard(order_id)
                    self.run.settled[order_id] = Saga(status, created_at, settled_at)
                if rows:
                    self.on_settled(len(rows))
            await asyncio.sleep(self.interval_s)


class Progress:
    """A one-line text bar on stderr: what was sent, accepted, settled and failed so far."""

    def __init__(self, run: SagaRun, fraction: Callable[[float], float]) -> None:
        self.run = run
        self.fraction = fraction
        self.started = time.monotonic()

    def draw(self, end: str = "") -> None:
        elapsed = time.monotonic() - self.started
        done = int(BAR_WIDTH * min(1.0, max(0.0, self.fraction(elapsed))))
        run = self.run
        sys.stderr.write(
            f"\r{run.label:<18}[{'#' * done}{'.' * (BAR_WIDTH - done)}] {elapsed:5.1f}s "
            f"sent {run.sent}  202 {len(run.accepted_ms)}  settled {len(run.settled)}  "
            f"http errors {sum(run.http_errors.values())}{end}")
        sys.stderr.flush()

    async def loop(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(0.2)


class Load:
    """One run's HTTP client: places orders and records the 202s and the failures."""

    def __init__(self, settings: StackSettings, session: aiohttp.ClientSession,
                 run: SagaRun, customer: str, declined_share: float = 0.0) -> None:
        self.url = f"http://127.0.0.1:{settings.port_of('orders-api')}/orders"
        self.customer = customer
        self.declined_share = declined_share
        """This share of the orders is declined by the psp, spread evenly over the run."""
        self.session = session
        self.run = run
        self.prefix = uuid.uuid4().hex[:8]
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, request: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(request)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def place(self, started: float) -> bool:
        """POST one order; ``started`` (when it was due) is the origin of its 202 latency."""
        run = self.run
        key = f"bench-saga-{self.prefix}-{run.sent}"
        declined = (math.floor((run.sent + 1) * self.declined_share)
                    > math.floor(run.sent * self.declined_share))
        body = {"customer_id": self.customer,
                "payment_token": "tok_decline" if declined else "tok_ok",
                "items": [{"sku": SKUS[run.sent % len(SKUS)], "quantity": 1}]}
        run.sent += 1
        try:
            async with self.session.post(self.url, json=body,
                                         headers={"Idempotency-Key": key}) as response:
                if response.status != 202:
                    run.http_errors[f"HTTP {response.status}"] += 1
                    return False
                order_id = (await response.json())["id"]
        except (aiohttp.ClientError, TimeoutError) as error:
            run.http_errors[type(error).__name__] += 1
            return False
        run.accepted_ms.append((time.monotonic() - started) * 1000)
        run.pending.add(order_id)
        return True

    async def finish(self) -> None:
        """Wait for the requests in flight, then cancel (and count) any still queued."""
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=HTTP_TIMEOUT_S)
            for task in late:
                task.cancel()
            if late:
                self.run.http_errors["not sent in time"] += len(late)


@asynccontextmanager
async def background(*loops: Coroutine[None, None, None]
                     ) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run ``loops`` while the body runs; a loop's failure is raised, not swallowed."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if not isinstance(outcome, asyncio.CancelledError):
                raise outcome


def emailed_customer(settings: StackSettings) -> str:
    """A registered customer who wants email: each saga measured ends with notification
    sending a message through the notifier, as a real customer's would."""
    shop = Shop(settings)
    customer = shop.register(f"bench-{uuid.uuid4().hex[:8]}@example.org")
    shop.wait_known_to_notification(customer)
    return customer


async def measure(settings: StackSettings, run: SagaRun, concurrency: int, poll_s: float,
                  generate: Callable[[Load], Awaitable[None]],
                  fraction: Callable[[float], float],
                  on_settled: Callable[[int], None] = lambda count: None,
                  declined_share: float = 0.0) -> SagaRun:
    """Place orders with ``generate``, then wait (bounded) for their sagas to settle."""
    async with (
        await psycopg.AsyncConnection.connect(settings.database_dsn("orders"),
                                              autocommit=True) as conn,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                              timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)) as session,
    ):
        await quiesce(conn)
        load = Load(settings, session, run, await asyncio.to_thread(emailed_customer, settings),
                    declined_share)
        progress = Progress(run, fraction)
        watcher = Watcher(conn, run, poll_s, on_settled)
        meter = CpuMeter(launcher.component_pids(settings))
        async with background(watcher.loop(), progress.loop()) as loops:
            start = time.monotonic()
            await generate(load)
            await load.finish()
            run.load_seconds = time.monotonic() - start
            deadline = time.monotonic() + settings.order_deadline_s + SETTLE_MARGIN_S
            while (run.pending and time.monotonic() < deadline
                   and not any(loop.done() for loop in loops)):
                await asyncio.sleep(poll_s)
        run.cpu = meter.read()
        progress.draw("\n")
    return run


async def steady(settings: StackSettings, rate: float, seconds: float,
                 concurrency: int, declined_share: float = 0.0) -> SagaRun:
    """Open loop: order n is due at start + n/rate, whether or not earlier ones returned."""
    run = SagaRun(f"steady {rate:.0f}/s")
    total = min(int(rate * seconds), MAX_ORDERS)
    slots = asyncio.Semaphore(concurrency)

    async def one(load: Load, due: float) -> None:
        async with slots:
            await load.place(due)

    async def generate(load: Load) -> None:
        start = time.monotonic()
        for n in range(total):
            due = start + n / rate
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            load.spawn(one(load, due))

    return await measure(settings, run, concurrency, 0.25, generate,
                         lambda elapsed: len(run.settled) / max(total, 1),
                         declined_share=declined_share)


async def saturate(settings: StackSettings, seconds: float, concurrency: int) -> SagaRun:
    """Closed loop on sagas: ``concurrency`` in flight, the next placed when one settles."""
    run = SagaRun(f"max ({concurrency} sagas)")
    slots = asyncio.Semaphore(concurrency)

    def release(count: int) -> None:
        for _ in range(count):
            slots.release()

    async def one(load: Load) -> None:
        if not await load.place(time.monotonic()):
            slots.release()

    async def generate(load: Load) -> None:
        end = time.monotonic() + seconds
        while run.sent < MAX_ORDERS:
            try:
                await asyncio.wait_for(slots.acquire(), end - time.monotonic())
            except TimeoutError:
                return
            load.spawn(one(load))

    # A short poll: a settled saga's slot stays idle until the watcher sees it.
    return await measure(settings, run, concurrency, 0.05, generate,
                         lambda elapsed: elapsed / seconds, release)


def windows(run: SagaRun, count: int) -> list[SagaRun]:
    """The run's settled sagas in ``count`` consecutive windows, in order of creation."""
    ordered = sorted(run.settled.items(), key=lambda item: item[1].created_at)
    size = max(1, len(ordered) // count)
    return [SagaRun(f"window {n + 1}", settled=dict(ordered[n * size:(n + 1) * size]))
            for n in range(count) if ordered[n * size:(n + 1) * size]]


def print_soak(run: SagaRun, count: int) -> None:
    """The first and the last window side by side: does the system slow down with use?"""
    parts = windows(run, count)
    first, last = parts[0], parts[-1]
    print(f"\n{'soak window':<18}{'sagas':>7}{'sagas/s':>9}{'p50 ms':>8}{'p99 ms':>8}")
    for part in (first, last):
        print(f"{part.label:<18}{len(part.settled):>7}{part.per_second()[0]:>9.1f}"
              f"{part.latency_ms(50):>8.0f}{part.latency_ms(99):>8.0f}")
    ratios = [last.latency_ms(p) / first.latency_ms(p) if first.latency_ms(p) else float("nan")
              for p in (50, 99)]
    print(f"summary: soak {len(run.settled)} sagas, last/first window: p50 x{ratios[0]:.2f},"
          f" p99 x{ratios[1]:.2f}, rate x{last.per_second()[0] / first.per_second()[0]:.2f}")


def print_table(runs: list[SagaRun]) -> None:
    print(f"\n{'run':<18}{'sent':>7}{'202':>7}{'202/s':>7}{'sagas/s':>8}{'conf/s':>8}"
          f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'202 p50':>8}{'202 p99':>8}{'errors':>8}")
    for run in runs:
        latencies = [saga.latency_ms for saga in run.settled.values()]
        errors = error_count(run)
        settled, confirmed = run.per_second()
        print(f"{run.label:<18}{run.sent:>7}{len(run.accepted_ms):>7}"
              f"{run.accepted_per_second():>7.0f}{settled:>8.1f}{confirmed:>8.1f}"
              f"{percentile(latencies, 50):>8.0f}{percentile(latencies, 95):>8.0f}"
              f"{percentile(latencies, 99):>8.0f}{percentile(run.accepted_ms, 50):>8.1f}"
              f"{percentile(run.accepted_ms, 99):>8.1f}{errors:>8}")
    for run in runs:
        details = [f"{reason}: {n}" for reason, n in sorted(run.http_errors.items())]
        details += [f"{status}: {n}" for status, n in sorted(run.outcomes.items())
                    if status != "CONFIRMED"]
        if run.pending:
            details.append(f"still PENDING at the end: {len(run.pending)}")
        if details:
            print(f"{run.label} errors: " + ", ".join(details))
    for run in runs:
        if run.cpu is not None:
            print_per_unit(run.cpu, len(run.settled), "saga")


def figures(run: SagaRun) -> dict[str, object]:
    """A run's summary as ``--json`` gives it: the figures of the summary line and more."""
    settled, confirmed = run.per_second()
    return {"run": run.label, "sent": run.sent, "accepted": len(run.accepted_ms),
            "sagas_per_s": settled, "confirmed_per_s": confirmed,
            "p50_ms": run.latency_ms(50), "p95_ms": run.latency_ms(95),
            "p99_ms": run.latency_ms(99), "errors": error_count(run),
            "outcomes": dict(run.outcomes), "still_pending": len(run.pending),
            "cpu_ms_per_saga": run.cpu.total_s * 1000 / len(run.settled)
            if run.cpu and run.settled else None,
            "cpu_ms_per_saga_by_component": {
                name: seconds * 1000 / len(run.settled)
                for name, seconds in run.cpu.seconds.items()} if run.cpu and run.settled
            else {}}


def summary(runs: list[SagaRun]) -> str:
    """One line per benchmark invocation, for logs and notes."""
    parts = []
    for run in runs:
        cpu = (f", {run.cpu.total_s * 1000 / len(run.settled):.1f} CPU-ms/saga"
               if run.cpu and run.settled else "")
        parts.append(f"{run.label}: {run.per_second()[0]:.1f} sagas/s, p50"
                     f" {run.latency_ms(50):.0f} ms, p99 {run.latency_ms(99):.0f}"
                     f" ms, {error_count(run)} errors{cpu}")
    return "summary: " + "; ".join(parts)


def error_count(run: SagaRun) -> int:
    return (sum(run.http_errors.values()) + len(run.pending)
            + sum(n for status, n in run.outcomes.items() if status != "CONFIRMED"))


def run_plan(settings: StackSettings, rate: float, seconds: float, max_seconds: float,
             concurrency: int, tag: str = "") -> list[SagaRun]:
    """The steady run, then the max run, as asked; ``tag`` marks their labels."""
    runs = []
    if rate > 0 and seconds > 0:
        runs.append(asyncio.run(steady(settings, rate, seconds, concurrency)))
    if max_seconds > 0:
        runs.append(asyncio.run(saturate(settings, max_seconds, concurrency)))
    for run in runs:
        run.label = f"{run.label}{tag}"
    return runs


@contextmanager
def replicas_added(settings: StackSettings, replicas: str) -> Iterator[StackSettings]:
    """The running stack plus the replicas ``replicas`` asks for (``payments=2,...``),
    started for the body and drained and stopped by pid after it.

    Started from this process beside a supervisor, if one runs: it does not watch them,
    so nothing else starts or stops them meanwhile. A replica already running would make
    the one-replica run a replicated one, so it is refused.
    """
    wider = replace(settings, replicas=replicas)
    wider.validate()
    registry = launcher.registry_for(settings)
    extra = [c for c in service_components(wider) if split_replica(c.name)[1] > 1]
    running = [c.name for c in extra if registry.running(c.name)]
    if running or not extra:
        raise ConfigError(f"--replicas {replicas}: {', '.join(running) or 'no replica'} to"
                          " add; the comparison needs a stack with one process per service")
    try:
        launcher.start_components(extra, registry, wider, print)
        launcher.wait_shared(wider)
        yield wider
    finally:
        for component in extra:
            registry.stop(component.name)


def print_ratios(one: list[SagaRun], more: list[SagaRun]) -> None:
    """Each run with replicas against the same run without: above 1 is more (or slower)."""
    print(f"\n{'replicas / one process':<34}{'sagas/s':>8}{'p50':>7}{'p99':>7}{'CPU/saga':>9}")
    for base, other in zip(one, more, strict=True):
        cpu = [run.cpu.total_s / len(run.settled) if run.cpu and run.settled else 0.0
               for run in (base, other)]
        figures = [(other.per_second()[0], base.per_second()[0]),
                   (other.latency_ms(50), base.latency_ms(50)),
                   (other.latency_ms(99), base.latency_ms(99)), (cpu[1], cpu[0])]
        print(f"{other.label:<34}" + "".join(
            f"{(f'x{new / old:.2f}' if old else '-'):>{width}}"
            for (new, old), width in zip(figures, (8, 7, 7, 9), strict=True)))


def main(settings: StackSettings, rate: float, seconds: float, max_seconds: float,
         concurrency: int, replicas: str | None = None) -> list[dict[str, object]]:
    """Steady ``rate`` for ``seconds``, then ``concurrency`` sagas in flight for
    ``max_seconds``; a rate or duration of 0 skips that run. With ``replicas``
    (``payments=2,...``) both again with those replicas added, side by side."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    plan = []
    if rate > 0 and seconds > 0:
        plan.append(f"steady {rate:.0f}/s for {seconds:.0f}s")
    if max_seconds > 0:
        plan.append(f"max with {concurrency} sagas in flight for {max_seconds:.0f}s")
    print(f"saga benchmark: {', then '.join(plan) or 'nothing to run'} "
          f"(poll.interval.ms={settings.cdc_poll_interval_ms}, "
          f"order deadline {settings.order_deadline_s:.0f}s)"
          + (f", then again with replicas {replicas}" if replicas else ""))
    stock_bench_skus(settings)
    runs = run_plan(settings, rate, seconds, max_seconds, concurrency)
    more: list[SagaRun] = []
    if replicas:
        with replicas_added(settings, replicas) as wider:
            more = run_plan(wider, rate, seconds, max_seconds, concurrency, f" {replicas}")
    print_table(runs + more)
    if more:
        print_ratios(runs, more)
    runs += more
    print("\nsaga latency: order created_at -> its first terminal history row (server clock)."
          "\nsagas/s, conf/s: settled, confirmed sagas / (first created -> last settled)."
          "\n202/s: accepted orders / load time. errors: HTTP failures + settled other than"
          " CONFIRMED + still pending.")
    print(summary(runs))
    return [figures(run) for run in runs]


def soak(settings: StackSettings, sagas: int, rate: float, window_count: int = 10
         ) -> dict[str, object]:
    """``sagas`` orders at a steady ``rate``, then the first and last windows compared."""
    if not 0 < sagas <= MAX_ORDERS or rate <= 0:
        raise ConfigError(f"soak needs 0 < sagas <= {MAX_ORDERS} and a positive rate")
    print(f"saga soak: {sagas} orders at {rate:.0f}/s ({sagas / rate:.0f}s), compared in"
          f" {window_count} windows")
    stock_bench_skus(settings)
    run = asyncio.run(steady(settings, rate, sagas / rate, 256))
    print_table([run])
    print(summary([run]))
    print_soak(run, window_count)
    return {**figures(run), "windows": [figures(window) for window in windows(run, window_count)]}
