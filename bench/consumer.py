"""Events/s through one consumer process, and what the Redis fast path buys.

The handler is deliberately trivial (one UPDATE), so the figures show the runtime's own
cost: decode, dedupe lookup, one transaction with the inbox insert, offset commits. Each
variant reads the same events twice, as fresh events and then as a full redelivery,
with Redis in front of the inbox and with the inbox alone, side by side.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime
from choreo.outbox.dedupe import DedupeStore, InboxOnly, RedisDedupe
from choreo.outbox.delivery import Delivery, ReceivedEvent
from choreo.outbox.kafka import build_producer, ensure_topics
from choreo.outbox.retry import Backoff
from choreo.outbox.runner import apply_schema
from choreo.outbox.wire import OUTBOX_DDL
from choreo.schemas.catalog import SchemaCatalog
from choreo.stack.components import ensure_database
from choreo.stack.settings import StackSettings

AGGREGATES = 50
DATABASE = "bench_consumer"


@dataclass
class Timing:
    count: int = 0
    first: float = 0.0
    last: float = 0.0

    @property
    def rate(self) -> float:
        return self.count / (self.last - self.first) if self.last > self.first else 0.0


def prepare_database(settings: StackSettings) -> str:
    url = ensure_database(settings, DATABASE)
    apply_schema(url, OUTBOX_DDL)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_counter (id int PRIMARY KEY, n bigint)")
        conn.execute("INSERT INTO bench_counter SELECT g, 0 FROM generate_series(0, %s) g"
                     " ON CONFLICT DO NOTHING", (AGGREGATES,))
    return url


def produce(settings: StackSettings, topics: list[str], count: int) -> None:
    """The same events, byte for byte, into each topic: the second is a redelivery."""
    codec = EventCodec(SchemaCatalog.load())
    ensure_topics(settings.kafka, topics)
    producer = build_producer(settings.kafka, **{"linger.ms": 20})
    for n in range(count):
        key = f"agg-{n % AGGREGATES}"
        data, schema = codec.encode("OrderConfirmed", {"order_id": key, "total_cents": n})
        headers = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"OrderConfirmed"),
                   ("ce_dataschema", schema.reference.encode()), ("ce_source", b"bench")]
        for topic in topics:
            producer.produce(topic, key=key, value=data, headers=headers)
        if n % 10000 == 0:
            producer.flush(30)
    producer.flush(60)


def bump(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
    conn.execute("UPDATE bench_counter SET n = n + 1 WHERE id = %s",
                 (int(event.aggregate_id.rsplit("-", 1)[1]),))


def consume(settings: StackSettings, url: str, group: str, topic: str, dedupe: DedupeStore,
            expected: int) -> Timing:
    runtime = ConsumerRuntime(
        group_id=group, kafka=settings.kafka, database_url=url,
        codec=EventCodec(SchemaCatalog.load()), handlers={"OrderConfirmed": bump},
        dedupe=dedupe, backoff=Backoff(max_attempts=3), topics=[topic],
    )
    timing = Timing()
    process_batch = runtime.process_batch

    def timed(deliveries: list[Delivery]) -> list[str]:
        timing.first = timing.first or time.perf_counter()
        outcomes = process_batch(deliveries)
        timing.last = time.perf_counter()
        timing.count += len(deliveries)
        return outcomes

    runtime.process_batch = timed  # type: ignore[method-assign]
    runtime.run(idle_exit_s=2.0)
    assert timing.count == expected, f"{group}: handled {timing.count} of {expected}"
    return timing


def main(settings: StackSettings, count: int) -> dict[str, object]:
    run = uuid.uuid4().hex[:8]
    fresh, again = f"bench.consumer.{run}.fresh", f"bench.consumer.{run}.again"
    url = prepare_database(settings)
    print(f"consumer benchmark: {count} events, handler = one UPDATE + inbox insert")
    produce(settings, [fresh, again], count)
    variants: dict[str, tuple[Timing, Timing]] = {}
    for name, dedupe in (("redis + inbox", RedisDedupe(settings.redis_url)),
                         ("inbox only", InboxOnly())):
        group = f"bench-{name.split()[0]}-{run}"
        first = consume(settings, url, group, fresh, dedupe, count)
        second = consume(settings, url, group, again, dedupe, count)
        variants[name] = (first, second)
    print(f"\n{'dedupe':<16}{'fresh events/s':>16}{'redelivered events/s':>22}")
    for name, (first, second) in variants.items():
        print(f"{name:<16}{first.rate:>16.0f}{second.rate:>22.0f}")
    redis_fresh, redis_again = variants["redis + inbox"]
    inbox_fresh, inbox_again = variants["inbox only"]
    print(f"\nRedis costs {100 * (1 - redis_fresh.rate / inbox_fresh.rate):.0f}% on fresh events"
          f" and makes redelivery {redis_again.rate / inbox_again.rate:.1f}x faster")
    print(f"summary: consumer {redis_fresh.rate:.0f} fresh events/s with Redis + inbox,"
          f" {inbox_fresh.rate:.0f} inbox only; redelivered {redis_again.rate:.0f} vs"
          f" {inbox_again.rate:.0f}")
    return {"events": count, "redis_fresh_per_s": redis_fresh.rate,
            "inbox_fresh_per_s": inbox_fresh.rate, "redis_redelivered_per_s": redis_again.rate,
            "inbox_redelivered_per_s": inbox_again.rate}
