"""After the embedded broker started with an empty log: publish the retention window again.

The broker keeps its topics in memory, so every start of it is a start from nothing:
events that were published but not yet consumed would be gone, and Debezium's
replication slot has already confirmed them. The outbox rows of the last
``outbox_retention_s`` seconds are still in each service database, so they are
published again, in insertion order, before Connect streams anything newer (Connect is
stopped first if it runs, and started again by the caller): per aggregate, events then
reach consumers in the order they happened, and the inboxes turn what was already
handled into duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from infra.processes import ProcessRegistry
from infra.settings import OUTBOX_DATABASES, StackSettings
from outbox.kafka import build_producer
from outbox.relay import republish_window


def republish_lost_log(settings: StackSettings, registry: ProcessRegistry,
                       report: Callable[[str], None]) -> int:
    """Returns how many events were published again."""
    if registry.running("connect"):
        registry.stop("connect")
        report("connect       stopped while the lost broker log is published again")
    started = time.monotonic()
    producer = build_producer(settings.kafka_bootstrap)
    total = 0
    for database in OUTBOX_DATABASES:
        total += republish_window(settings.database_dsn(database), producer,
                                  settings.outbox_retention_s)
    report(f"broker        new log: re-published {total} events of the last"
           f" {settings.outbox_retention_s:.0f}s in {time.monotonic() - started:.1f}s")
    return total
