"""After the embedded broker started with an empty log: publish the retention window again.

The broker keeps its topics in memory, so every start of it is a start from nothing:
events that were published but not yet consumed would be gone, and Debezium's
replication slot has already confirmed them. The outbox rows of the last
``outbox_retention_s`` seconds are still in each service database, so they are
published again, in insertion order, before Connect streams anything newer (Connect is
stopped first if it runs, and started again by the caller): per aggregate, events then
reach consumers in the order they happened. Events that every consumer handling their
type has in its inbox are left out (``outbox.relay.Readers``); the inboxes turn the rest of
what was already handled into duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psycopg

from outbox.relay import Readers, relay_producer, republish_window
from stack.processes import ProcessRegistry
from stack.settings import OUTBOX_DATABASES, StackSettings

CONNECT_STOP_WITHOUT_BROKER_S = 1.0
"""SIGTERM first, so the worker writes its offsets file, but not the graceful minute: with
its broker gone it can flush no record, and its producer's close waited out its timeout
(about 10 s of every broker restart in a storm). What it had not flushed is read again
from the slot, which Debezium confirms only up to the offsets file."""


def stop_connect_for_new_log(registry: ProcessRegistry, report: Callable[[str], None]) -> None:
    """Before a broker starts: a worker (or polling relay) still running would publish into
    the new log before the window (and its producer's metadata requests would auto-create
    topics with the broker's default partition count), so it waits until the window is out."""
    for name in ["connect", *(n for n in registry.names() if n.startswith("relay-"))]:
        if registry.running(name):
            started = time.monotonic()
            registry.stop(name, timeout_s=CONNECT_STOP_WITHOUT_BROKER_S)
            report(f"{name:<13} stopped in {time.monotonic() - started:.1f}s until the lost"
                   " broker log is published again")


def republish_lost_log(settings: StackSettings, registry: ProcessRegistry,
                       report: Callable[[str], None]) -> int:
    """Returns how many events were published again."""
    stop_connect_for_new_log(registry, report)
    window_s = republish_window_s(settings)
    started = time.monotonic()
    producer = relay_producer(settings.kafka_bootstrap)  # partitions as Connect does
    total = left_out = 0
    with ExitStack() as connections:
        # The consumers' subscriptions and inboxes live in the same databases as the outboxes.
        readers = Readers.of(connections.enter_context(
            psycopg.connect(settings.database_dsn(database), autocommit=True))
            for database in OUTBOX_DATABASES)
        for database in OUTBOX_DATABASES:
            result = republish_window(settings.database_dsn(database), producer, window_s,
                                      readers)
            total, left_out = total + result.published, left_out + result.left_out
    report(f"broker        new log: re-published {total} events of the last"
           f" {window_s:.0f}s in {time.monotonic() - started:.1f}s ({left_out} that every"
           " handler had handled left out)")
    drained_marker(settings).unlink(missing_ok=True)
    return total


DRAIN_MARGIN_S = 60.0
"""Rows younger than the drain by this much are published again anyway: a job thread
may have written one while the last services were stopping."""


def drained_marker(settings: StackSettings) -> Path:
    return settings.state_dir / "broker-drained-at"


def mark_drained(settings: StackSettings) -> None:
    """``choreo down`` saw every consumer at the end of the log before the broker stopped."""
    drained_marker(settings).write_text(f"{time.time():.3f}\n")


def republish_window_s(settings: StackSettings) -> float:
    """The whole retention window after a crash; after a drained ``down``, only what came
    after the drain: everything before it was consumed, so it would be only duplicates."""
    try:
        drained_at = float(drained_marker(settings).read_text())
    except (FileNotFoundError, ValueError):
        return settings.outbox_retention_s
    return min(settings.outbox_retention_s, max(0.0, time.time() - drained_at) + DRAIN_MARGIN_S)
