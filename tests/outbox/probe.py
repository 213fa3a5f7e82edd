"""A probe consumer for runtime tests: records each effect so doubles and gaps show.

Runs in-process (``probe_runtime``) or as its own process (``python -m
tests.outbox.probe``) so a test can SIGKILL it between database commit and offset commit.
"""

from __future__ import annotations

import collections
import os
import sys
from typing import Any

import psycopg

from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime, Handler
from choreo.outbox.dedupe import DedupeStore, MemoryDedupe, RedisDedupe
from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.retry import Backoff
from choreo.outbox.runner import apply_schema
from choreo.outbox.wire import OUTBOX_DDL
from choreo.schemas.catalog import SchemaCatalog

PROBE_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    seq       bigserial PRIMARY KEY,
    consumer  text NOT NULL,
    key       text NOT NULL,
    event_id  uuid NOT NULL,
    value     bigint NOT NULL
);
"""


def prepare(database_url: str) -> None:
    apply_schema(database_url, OUTBOX_DDL)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(PROBE_SCHEMA)


def recording_handler(consumer: str, run: str, failing: set[int] | None = None) -> Handler:
    """Record OrderConfirmed events of this run; raise for totals listed in ``failing``."""

    def handle(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        if not event.aggregate_id.startswith(run):
            return
        value = event.payload["total_cents"]
        if failing is not None and value in failing:
            raise RuntimeError(f"probe told to fail on {value}")
        conn.execute(
            "INSERT INTO effects (consumer, key, event_id, value) VALUES (%s, %s, %s, %s)",
            (consumer, event.aggregate_id, event.event_id, value),
        )

    return handle


def probe_runtime(bootstrap: str, database_url: str, consumer: str, run: str,
                  dedupe: DedupeStore | None = None, failing: set[int] | None = None,
                  max_attempts: int = 3) -> ConsumerRuntime:
    return ConsumerRuntime(
        group_id=consumer, kafka=bootstrap, database_url=database_url,
        codec=EventCodec(SchemaCatalog.load()),
        handlers={"OrderConfirmed": recording_handler(consumer, run, failing)},
        dedupe=dedupe or MemoryDedupe(),
        backoff=Backoff(base_s=0.01, cap_s=0.05, max_attempts=max_attempts),
        request_poll_interval_s=0.2,
    )


def effects(database_url: str, consumer: str) -> list[tuple[str, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT key, value FROM effects WHERE consumer = %s ORDER BY seq", (consumer,)
        ).fetchall()


if __name__ == "__main__":
    bootstrap_arg, database_arg, consumer_arg, run_arg, redis_arg = sys.argv[1:6]
    runtime = probe_runtime(bootstrap_arg, database_arg, consumer_arg, run_arg,
                            RedisDedupe(redis_arg) if redis_arg else None)
    runtime.batch_size = int(os.environ.get("PROBE_BATCH", "50"))
    runtime.run()


def assert_each_once(found: list[tuple[str, int]], keys: int, per_key: int) -> None:
    per_key_values = collections.defaultdict(list)
    for key, value in found:
        per_key_values[key].append(value)
    assert len(per_key_values) == keys
    for key, values in per_key_values.items():
        assert values == list(range(per_key)), f"{key}: {values}"
