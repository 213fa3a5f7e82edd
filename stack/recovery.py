"""After the broker started with a new, empty log: publish the retention window again.

The embedded broker is Apache Kafka with its log on disk (``stack.broker``): a restart,
a SIGKILL or ``down``/``up`` keeps every topic, so none of them needs anything here. What
still loses the log is a broker data folder deleted (or a disk replaced): Debezium's
replication slots have long confirmed those events and Connect's offsets point past
them. The outbox rows of the last ``outbox_retention_s`` seconds are still in each
service database, so they are published again, in insertion order, before Connect
streams anything newer (Connect is stopped first if it runs, and started again by the
caller): per aggregate, events then reach consumers in the order they happened. Events
that every consumer handling their type has in its inbox are left out
(``outbox.relay.Readers``); the inboxes turn the rest of what was already handled into
duplicates.

"This log still needs its window" is a file written *before* the broker formats a new
log and deleted only once the window is out, so a republish that fails or is
interrupted (PostgreSQL down, Ctrl-C during ``up``) is done again by the next start
rather than forgotten.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psycopg

from choreo.outbox.relay import Readers, relay_producer, republish_window
from choreo.stack import manifest
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings

CONNECT_STOP_WITHOUT_BROKER_S = 1.0
"""SIGTERM first, so the worker writes its offsets file, but not the graceful minute: its
producer's close would wait out its timeout with no broker to flush to. What it had not
flushed is read again from the slot, which Debezium confirms only up to the offsets file."""


def new_log_marker(settings: StackSettings) -> Path:
    return settings.state_dir / "broker-log-needs-window"


def note_new_log(settings: StackSettings) -> None:
    """Called before the broker formats a new log: durable before anything can go wrong."""
    marker = new_log_marker(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    with marker.open("w") as stream:
        stream.write(f"{time.time():.3f}\n")
        stream.flush()
        os.fsync(stream.fileno())


def log_needs_window(settings: StackSettings) -> bool:
    return new_log_marker(settings).exists()


def window_s(settings: StackSettings) -> float:
    """The retention window counted back from when the log was lost, not from now: a
    republish that succeeds only an hour later still covers what the lost log held."""
    try:
        lost_at = float(new_log_marker(settings).read_text())
    except (FileNotFoundError, ValueError):
        return settings.outbox_retention_s
    return settings.outbox_retention_s + max(0.0, time.time() - lost_at)


def stop_connect_for_new_log(registry: ProcessRegistry, report: Callable[[str], None]) -> None:
    """Before a new log gets its window: a worker (or polling relay) still running would
    publish newer events into it first, out of order per aggregate."""
    for name in ["connect", *(n for n in registry.names() if n.startswith("relay-"))]:
        if registry.running(name):
            started = time.monotonic()
            registry.stop(name, timeout_s=CONNECT_STOP_WITHOUT_BROKER_S)
            report(f"{name:<13} stopped in {time.monotonic() - started:.1f}s until the new"
                   " broker log has the outbox window")


def republish_lost_log(settings: StackSettings, registry: ProcessRegistry,
                       report: Callable[[str], None]) -> int:
    """Returns how many events were published again; clears the marker only when done."""
    stop_connect_for_new_log(registry, report)
    window = window_s(settings)
    started = time.monotonic()
    producer = relay_producer(settings.kafka)  # partitions as Connect does
    total = left_out = 0
    with ExitStack() as connections:
        # The consumers' subscriptions and inboxes live in the same databases as the outboxes.
        readers = Readers.of(connections.enter_context(
            psycopg.connect(settings.database_dsn(database), autocommit=True))
            for database in manifest.databases(outbox=True))
        for database in manifest.databases(outbox=True):
            result = republish_window(settings.database_dsn(database), producer, window,
                                      readers)
            total, left_out = total + result.published, left_out + result.left_out
    report(f"broker        new log: re-published {total} events of the last"
           f" {window:.0f}s in {time.monotonic() - started:.1f}s ({left_out} that every"
           " handler had handled left out)")
    new_log_marker(settings).unlink(missing_ok=True)
    return total
