"""Debezium against the polling relay: the same stack, the same load, side by side.

One database of the benchmark's own (``bench_relay``, the outbox schema only) is relayed
first by a Debezium connector of its own, then by a polling relay process
(``python -m choreo.outbox.poller``), each for a steady run (hop latency, commit -> consumer) and
a max run (events/s with four writers). For each relay it reads the CPU of the relay
process (Connect, whose other three tasks idle meanwhile, or the relay), PostgreSQL and
the broker, and the database's load from ``pg_stat_database`` and
``pg_stat_user_tables``, then prints both columns with the ratio polling / cdc.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from choreo.bench.hop import HopResult, flood, steady
from choreo.outbox.poller import lock_holders
from choreo.outbox.runner import apply_schema
from choreo.outbox.wire import OUTBOX_DDL, OUTBOX_TEMPLATE, render
from choreo.stack import launcher
from choreo.stack.components import ensure_database
from choreo.stack.connectors import ConnectClient, template_values
from choreo.stack.cpu import CpuMeter
from choreo.stack.relays import drop_slot, remove_connector
from choreo.stack.settings import REPO_ROOT, StackSettings
from choreo.stack.slots import ensure_replication_slot, outbox_slot

DATABASE = "bench_relay"
RELAY = "relay-bench"
DATABASE_STATS = """SELECT xact_commit + xact_rollback, tup_returned + tup_fetched
                    FROM pg_stat_database WHERE datname = current_database()"""
TABLE_STATS = """SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
                 FROM pg_stat_user_tables WHERE relname = 'outbox'"""


@dataclass
class RelayRun:
    relay: str
    steady: HopResult
    most: HopResult
    cpu_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    commits: int = 0
    rows_read: int = 0
    outbox_rows_read: int = 0

    @property
    def events(self) -> int:
        return self.steady.received + self.most.received


def prepare(settings: StackSettings) -> str:
    dsn = ensure_database(settings, DATABASE)
    apply_schema(dsn, OUTBOX_DDL)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox")
        conn.execute("DELETE FROM outbox_relay")
        conn.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
        # An autovacuum of the table falling into one run's window would count its reads
        # against that relay alone (seen: 390 rows read per event in one run).
        conn.execute("ALTER TABLE outbox SET (autovacuum_enabled = false)")
    return dsn


def database_load(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        time.sleep(1.1)  # the statistics of backends that just ended reach the view
        commits, rows = conn.execute(DATABASE_STATS).fetchone()  # type: ignore[misc]
        outbox = conn.execute(TABLE_STATS).fetchone()
    return int(commits), int(rows), int(outbox[0]) if outbox else 0


def with_cdc(settings: StackSettings, dsn: str, body: Callable[[dict[str, int]], RelayRun]
             ) -> RelayRun:
    connector = render(OUTBOX_TEMPLATE, template_values(settings, DATABASE))
    slot, plugin = outbox_slot(settings, DATABASE)
    ensure_replication_slot(dsn, DATABASE, slot, plugin)
    client = ConnectClient(settings.connect_url)
    client.put_config(connector["name"], connector["config"])
    client.wait_running(connector["name"])
    try:
        pids = {name: pid for name, pid in launcher.component_pids(settings).items()
                if name in ("connect", "postgres", "broker")}
        return body(pids)
    finally:
        remove_connector(settings, DATABASE, lambda line: None)
        drop_slot(settings, DATABASE)


def with_polling(settings: StackSettings, dsn: str,
                 body: Callable[[dict[str, int]], RelayRun]) -> RelayRun:
    registry = launcher.registry_for(settings)
    env = {"CHOREO_DATABASE_URL": dsn, **settings.kafka_env()}
    tracked = registry.start(RELAY, [sys.executable, "-m", "choreo.outbox.poller", "--from-end"],
                             env=env, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(dsn, autocommit=True) as conn:
            while lock_holders(conn) == 0:
                if time.monotonic() > deadline or registry.running(RELAY) is None:
                    raise RuntimeError(f"the polling relay did not start; see"
                                       f" {registry.log_file(RELAY)}")
                time.sleep(0.1)
        pids = {name: pid for name, pid in launcher.component_pids(settings).items()
                if name in ("connect", "postgres", "broker")}
        return body({**pids, "relay": tracked.pid})
    finally:
        registry.stop(RELAY)


def run_one(settings: StackSettings, relay: str, dsn: str, rate: float, seconds: float,
            total: int) -> RelayRun:
    def body(pids: dict[str, int]) -> RelayRun:
        time.sleep(2.0)  # let the relay settle before the load
        before = database_load(dsn)
        meter = CpuMeter(pids)
        steady_run = steady(settings, rate, seconds, DATABASE)
        most = flood(settings, total, 4, DATABASE)
        usage = meter.read()
        result = RelayRun(relay, steady_run, most, usage.seconds, usage.wall_s)
        result.commits, result.rows_read, result.outbox_rows_read = before
        return result

    run = (with_cdc if relay == "cdc" else with_polling)(settings, dsn, body)
    after = database_load(dsn)  # the relay's connections are closed: all stats are in
    run.commits = after[0] - run.commits
    run.rows_read = after[1] - run.rows_read
    run.outbox_rows_read = after[2] - run.outbox_rows_read
    return run


def ratio(polling: float, cdc: float) -> str:
    return f"x{polling / cdc:.2f}" if cdc else "-"


def main(settings: StackSettings, rate: float, seconds: float, total: int) -> dict[str, object]:
    print(f"relay benchmark: database {DATABASE}, each relay: steady {rate:.0f}/s for"
          f" {seconds:.0f}s, then {total} events by 4 writers")
    dsn = prepare(settings)
    cdc = run_one(settings, "cdc", dsn, rate, seconds, total)
    polling = run_one(settings, "polling", dsn, rate, seconds, total)

    def per_event_ms(run: RelayRun, name: str) -> float:
        return run.cpu_s.get(name, 0.0) * 1000 / max(run.events, 1)

    rows: list[tuple[str, float, float, str]] = [
        ("hop p50 ms (steady)", cdc.steady.percentile(50), polling.steady.percentile(50), "1"),
        ("hop p90 ms (steady)", cdc.steady.percentile(90), polling.steady.percentile(90), "1"),
        ("hop p99 ms (steady)", cdc.steady.percentile(99), polling.steady.percentile(99), "1"),
        ("sent (steady)", cdc.steady.sent, polling.steady.sent, "0"),
        ("received (steady)", cdc.steady.received, polling.steady.received, "0"),
        ("max events/s", cdc.most.received / cdc.most.seconds,
         polling.most.received / polling.most.seconds, "0"),
        ("hop p50 ms (max run)", cdc.most.percentile(50), polling.most.percentile(50), "1"),
        ("relay CPU ms/event", per_event_ms(cdc, "connect"), per_event_ms(polling, "relay"),
         "3"),
        ("connect CPU ms/event", per_event_ms(cdc, "connect"), per_event_ms(polling, "connect"),
         "3"),
        ("postgres CPU ms/event", per_event_ms(cdc, "postgres"),
         per_event_ms(polling, "postgres"), "3"),
        ("broker CPU ms/event", per_event_ms(cdc, "broker"), per_event_ms(polling, "broker"),
         "3"),
        ("db commits/s", cdc.commits / cdc.wall_s, polling.commits / polling.wall_s, "0"),
        ("db commits/event", cdc.commits / max(cdc.events, 1),
         polling.commits / max(polling.events, 1), "2"),
        ("db rows read/event", cdc.rows_read / max(cdc.events, 1),
         polling.rows_read / max(polling.events, 1), "2"),
        ("outbox rows read/event", cdc.outbox_rows_read / max(cdc.events, 1),
         polling.outbox_rows_read / max(polling.events, 1), "2"),
    ]
    print(f"\n{'':<24}{'cdc':>10}{'polling':>10}{'polling/cdc':>13}")
    for label, left, right, digits in rows:
        print(f"{label:<24}{left:>10.{digits}f}{right:>10.{digits}f}{ratio(right, left):>13}")
    print(f"\nover {cdc.wall_s:.1f}s (cdc) and {polling.wall_s:.1f}s (polling), {cdc.events}"
          f" and {polling.events} events; relay CPU is Connect's whole process in the cdc"
          " column (its three idle service tasks included, see 'connect' in the polling"
          " column), the relay process in the polling column")
    max_cdc = cdc.most.received / cdc.most.seconds
    max_polling = polling.most.received / polling.most.seconds
    print(f"summary: relay polling/cdc: hop p50 {polling.steady.percentile(50):.1f} vs"
          f" {cdc.steady.percentile(50):.1f} ms"
          f" ({ratio(polling.steady.percentile(50), cdc.steady.percentile(50))}), p99"
          f" {ratio(polling.steady.percentile(99), cdc.steady.percentile(99))}, max events/s"
          f" {max_polling:.0f} vs {max_cdc:.0f} ({ratio(max_polling, max_cdc)}),"
          f" relay CPU/event {ratio(per_event_ms(polling, 'relay'), per_event_ms(cdc, 'connect'))}")
    return {label: {"cdc": left, "polling": right} for label, left, right, _ in rows}
