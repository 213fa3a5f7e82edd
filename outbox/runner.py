"""Run a consumer service: the wiring every participant shares, in one place.

A service module supplies its schema file, a function that builds its handlers from an
``OutboxWriter``, and optionally periodic jobs (deadline sweepers); its ``__main__``
reads the settings. This module builds JSON logging, tracing, the database tables,
metrics/health, the consumer runtime and SIGTERM handling around them.
"""

from __future__ import annotations

import itertools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from choreo.outbox import deadletter, inbox, logs, watchdog
from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime, Handler, RunLock
from choreo.outbox.dedupe import DedupeStore, MemoryDedupe, RedisDedupe
from choreo.outbox.errors import ConfigError
from choreo.outbox.metrics import serve
from choreo.outbox.retry import Backoff
from choreo.outbox.session import ANSWER_TIMEOUT_S
from choreo.outbox.settings import ServiceSettings
from choreo.outbox.telemetry import configure_tracing
from choreo.outbox.wire import OUTBOX_DDL
from choreo.outbox.writer import OutboxWriter, prune
from choreo.schemas.catalog import SchemaCatalog

log = logging.getLogger(__name__)


Job = Callable[[psycopg.Connection[Any], OutboxWriter], None]

START_BACKOFF = Backoff(base_s=0.25, cap_s=5.0)
PRUNE_BATCH = 5000
PRUNE_BUDGET_S = 5.0
"""A pruning round's time at most: the jobs share one thread, and a deadline sweep waits
behind it. Rows left over go at the next round."""
"""Between tries to reach the database at start-up: quick at first, every 5 s at most."""

STARTING = {"status": "starting", "waiting_for": "database"}


@dataclass(frozen=True)
class PeriodicJob:
    """Work that no event triggers, such as expiring what passed its deadline."""

    name: str
    interval_s: float
    run: Job


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    schema_sql: Path
    build_handlers: Callable[[OutboxWriter], dict[str, Handler]]
    jobs: list[PeriodicJob] = field(default_factory=list)
    on_start: Callable[[psycopg.Connection[Any]], object] | None = None
    """Runs once after the schema is applied and before consuming (seed data, say)."""
    key_concurrency: int = 1
    """Handlers of different keys run side by side in this many threads; only for
    handlers whose keys share no rows (see ``outbox.lanes``)."""
    health: Callable[[], dict[str, object]] | None = None
    """More fields for ``/health`` (a circuit breaker's state, say)."""
    lock_first: RunLock | None = None
    """Locks a run's shared rows in one order before its handlers (see ``ConsumerRuntime``)."""
    schemas: Path = field(kw_only=True)
    """The folder of the events' Avro schemas, ``<aggregate>/<Type>.v<N>.avsc``: what the
    service decodes and emits. Its own, as a team keeps them beside its code."""
    emits: Collection[str] = field(kw_only=True)
    """The event types it emits, declared: its writer refuses any other
    (``UndeclaredEvent``), and ``choreo schemas contracts`` checks these (with the
    handlers' keys, what it consumes) against the schema folder."""


def wait_for_database(database_url: str, backoff: Backoff = START_BACKOFF) -> None:
    """Until PostgreSQL answers. A service started during an outage used to exit at
    once; five quick exits and the supervisor gave it up, and it stayed down after the
    database was back. Waiting instead (``/health`` says so, 503) costs nothing: there is
    nothing to consume before the database is there. SIGTERM still ends the wait (its
    handler is only installed once there is something to drain)."""
    for attempt in itertools.count(1):
        try:
            with psycopg.connect(database_url, connect_timeout=5):
                return
        except psycopg.OperationalError as error:
            delay = backoff.cap_s if attempt > 8 else backoff.delay(attempt)
            log.warning("database unreachable, trying again in %.1fs: %s", delay,
                        str(error).strip().splitlines()[0] if str(error).strip() else error)
            time.sleep(delay)


def apply_schema(database_url: str, *scripts: Path) -> None:
    """Idempotent DDL at start-up; an advisory lock keeps two replicas from racing."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(724313)")
        try:
            for script in scripts:
                conn.execute(script.read_text().encode())
        finally:
            conn.execute("SELECT pg_advisory_unlock(724313)")


def dedupe_store(settings: ServiceSettings) -> DedupeStore:
    if not settings.redis_url:
        return MemoryDedupe()
    store = RedisDedupe(settings.redis_url, settings.dedupe_ttl_s,
                        password=settings.redis_password or None)
    store.check_credentials()
    return store


def run_jobs(jobs: list[PeriodicJob], database_url: str, writer: OutboxWriter,
             stop: threading.Event) -> None:
    """Each job in its own transaction, on its own connection, until ``stop`` is set."""
    if not jobs:
        return
    next_run = {job.name: 0.0 for job in jobs}
    conn: psycopg.Connection[Any] | None = None
    while not stop.wait(0.2):
        for job in jobs:
            now = time.monotonic()
            if now < next_run[job.name]:
                continue
            next_run[job.name] = now + job.interval_s
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(database_url, connect_timeout=5)
                    watchdog.watch(conn, ANSWER_TIMEOUT_S)  # unanswered: reconnect
                job.run(conn, writer)
                conn.commit()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next interval
                log.exception("job %s failed", job.name)
                if conn is not None and not conn.closed:
                    conn.rollback()
    if conn is not None:
        conn.close()


def pruning_jobs(settings: ServiceSettings) -> list[PeriodicJob]:
    """Forgetting what left its retention: the outbox window, the inbox, settled dead
    letters."""
    def rounds(delete: Callable[[psycopg.Connection[Any], float, int], int],
               retention_s: float) -> Job:
        return lambda conn, _: prune_in_batches(conn, lambda c, n: delete(c, retention_s, n))
    return [
        PeriodicJob("prune-outbox", 30.0, rounds(prune, settings.outbox_retention_s)),
        PeriodicJob("prune-inbox", 300.0, rounds(inbox.prune, settings.inbox_retention_s)),
        PeriodicJob("prune-dead-letters", 300.0,
                    rounds(deadletter.prune, settings.dead_letter_retention_s)),
    ]


def prune_in_batches(conn: psycopg.Connection[Any],
                     delete: Callable[[psycopg.Connection[Any], int], int],
                     batch: int = PRUNE_BATCH, budget_s: float = PRUNE_BUDGET_S) -> int:
    """Batch after batch, each committed on its own (short locks, small WAL records),
    until one comes back short or the round's time is spent. One batch per round was a
    ceiling on the rate the table could take: 5,000 rows per 30 s is ~170 rows/s."""
    deleted, started = 0, time.monotonic()
    while True:
        count = delete(conn, batch)
        conn.commit()
        deleted += count
        if count < batch or time.monotonic() - started > budget_s:
            return deleted


def build_runtime(definition: ServiceDefinition, settings: ServiceSettings,
                  catalog: SchemaCatalog) -> tuple[ConsumerRuntime, OutboxWriter]:
    writer = OutboxWriter(EventCodec(catalog), source=definition.name, emits=definition.emits)
    runtime = ConsumerRuntime(
        group_id=definition.name,
        kafka=settings.kafka,
        database_url=settings.database_url,
        codec=EventCodec(catalog),
        handlers=definition.build_handlers(writer),
        dedupe=dedupe_store(settings),
        backoff=settings.backoff,
        batch_size=settings.batch_size,
        key_concurrency=definition.key_concurrency,
        lock_first=definition.lock_first,
        topic_settings=settings.topics,
    )
    return runtime, writer


def prepare_process(name: str, settings: ServiceSettings, schema_sql: Path) -> None:
    """What every choreo process does first, consumer or HTTP intake: JSON logs, tracing
    (before any instrumented library is used), and its tables."""
    logs.configure(name)
    configure_tracing(name, settings.telemetry_url, settings.trace_sampling)
    wait_for_database(settings.database_url)
    apply_schema(settings.database_url, OUTBOX_DDL, schema_sql)


def main(definition: ServiceDefinition, settings: ServiceSettings) -> None:
    """Run a consumer service with the settings its ``__main__`` read; returns after
    SIGTERM, once drained."""
    health: list[Callable[[], dict[str, object]]] = [lambda: STARTING]
    server = serve(settings.metrics_port, lambda: health[0](), settings.bind_host)
    prepare_process(definition.name, settings, definition.schema_sql)
    if definition.on_start is not None:
        with psycopg.connect(settings.database_url) as conn:
            definition.on_start(conn)
    runtime, writer = build_runtime(definition, settings, SchemaCatalog.load(definition.schemas))
    extra = definition.health
    health[0] = runtime.health if extra is None else lambda: {**runtime.health(), **extra()}
    signal.signal(signal.SIGTERM, lambda *_: runtime.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: runtime.stop_event.set())
    jobs = threading.Thread(target=run_jobs, name="jobs", daemon=True,
                            args=([*definition.jobs, *pruning_jobs(settings)],
                                  settings.database_url, writer,
                                  runtime.stop_event))
    jobs.start()
    log.info("started; consuming %s", ", ".join(runtime.topics))
    runtime.run()
    jobs.join(timeout=10)
    server.shutdown()
    log.info("stopped")


Start = Callable[[Mapping[str, str]], None]


def exit_status(name: str, start: Start | Mapping[str, Start], env: Mapping[str, str],
                argv: Sequence[str] = ()) -> int:
    """Run a service's ``start(env)`` as its entry point: 0 after a clean stop, 2 when a
    setting is bad, with the one line that names the variable (the supervisor's log and
    ``choreo status`` show it), never a traceback.

    A service of several processes (an HTTP intake and a consumer, say) passes its
    ``start`` per role, ``{"api": ..., "worker": ...}``, and its arguments: the first
    names the role, and anything else is a usage error (2)."""
    if isinstance(start, Mapping):
        role = start.get(argv[0] if argv else "")
        if role is None:
            print(f"{name}: name the process to run, one of {', '.join(start)}",
                  file=sys.stderr)
            return 2
        start = role
    try:
        start(env)
    except ConfigError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    return 0
