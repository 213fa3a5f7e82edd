"""One hop through the outbox: commit -> WAL -> Debezium -> broker -> consumer.

Prints latency percentiles at a steady rate, the maximum sustained rate, and, for
reference on the same machine in the same run: the raw broker's produce -> consume
latency at the same rate on a topic of its own (never a service's topic: the services
would dead-letter records without CloudEvents headers), and PostgreSQL's own commit rate
measured with pgbench (what the database could do without choreo on top).
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
from confluent_kafka import Consumer, TopicPartition

from choreo.outbox.codec import EventCodec
from choreo.outbox.kafka import build_consumer, build_producer, ensure_topics
from choreo.outbox.writer import OutboxWriter
from choreo.schemas.catalog import SchemaCatalog
from choreo.stack.install import postgres_bindir
from choreo.stack.settings import StackSettings

WRITER = OutboxWriter(EventCodec(SchemaCatalog.load()), source="bench", emits=None)


@dataclass
class HopResult:
    label: str
    sent: int
    received: int
    seconds: float
    latencies_ms: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


class Receiver:
    """Consumes order.events and stamps the arrival of this run's events."""

    def __init__(self, settings: StackSettings, run: str, topic: str = "order.events") -> None:
        self.consumer = build_consumer(settings.kafka, f"bench-{run}")
        self.prefix = run.encode()
        self.arrivals: dict[bytes, float] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.consumer.subscribe([topic], on_assign=self._start_at_the_end)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _start_at_the_end(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start at each partition's current end, resolved now rather than lazily (as
        "latest" is, which misses the first events), and without reading the topic's
        whole history (which, after a few benchmarks, delays the first arrivals)."""
        for partition in partitions:
            partition.offset = consumer.get_watermark_offsets(partition, timeout=10)[1]
        consumer.assign(partitions)
        self.ready.set()

    def _poll(self) -> list:
        """Return on the first message (``consume(n, timeout)`` would wait for ``n`` or the
        timeout, adding its own wait to every hop measured), then drain the buffer."""
        first = self.consumer.poll(0.05)
        return [] if first is None else [first, *self.consumer.consume(1000, timeout=0)]

    def _loop(self) -> None:
        while not self.stop.is_set():
            for message in self._poll():
                key = message.key()
                if message.error() is None and key and key.startswith(self.prefix):
                    for name, value in message.headers() or []:
                        if name == "ce_id":
                            self.arrivals.setdefault(value, time.monotonic())
        self.consumer.close()

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals) < count and time.monotonic() < deadline:
            time.sleep(0.01)


def emit_one(conn: psycopg.Connection, key: str, value: int) -> tuple[bytes, float]:
    event_id = WRITER.emit(conn, "OrderConfirmed", key, {"order_id": key, "total_cents": value})
    conn.commit()
    return str(event_id).encode(), time.monotonic()


def steady(settings: StackSettings, rate: float, seconds: float,
           database: str = "orders") -> HopResult:
    run = f"hop-{uuid.uuid4().hex[:8]}"
    receiver = Receiver(settings, run)
    receiver.ready.wait(30)
    committed: dict[bytes, float] = {}
    with psycopg.connect(settings.database_dsn(database)) as conn:
        start = time.monotonic()
        n = 0
        while (now := time.monotonic()) - start < seconds:
            due = start + n / rate
            if now < due:
                time.sleep(due - now)
            event_id, at = emit_one(conn, f"{run}-{n % 50}", n)
            committed[event_id] = at
            n += 1
    receiver.wait_for(n, 30)
    receiver.stop.set()
    latencies = [(receiver.arrivals[e] - t) * 1000 for e, t in committed.items()
                 if e in receiver.arrivals]
    return HopResult(f"steady {rate:.0f}/s", n, len(latencies), seconds, latencies)


def flood(settings: StackSettings, total: int, writers: int,
          database: str = "orders") -> HopResult:
    run = f"flood-{uuid.uuid4().hex[:8]}"
    receiver = Receiver(settings, run)
    receiver.ready.wait(30)
    committed: dict[bytes, float] = {}
    lock = threading.Lock()

    def write(worker: int) -> None:
        with psycopg.connect(settings.database_dsn(database)) as conn:
            for n in range(worker, total, writers):
                event_id, at = emit_one(conn, f"{run}-{n % 50}", n)
                with lock:
                    committed[event_id] = at

    start = time.monotonic()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    receiver.wait_for(total, 120)
    receiver.stop.set()
    last = max(receiver.arrivals.values(), default=start)
    latencies = [(receiver.arrivals[e] - t) * 1000 for e, t in committed.items()
                 if e in receiver.arrivals]
    return HopResult(f"max ({writers} writers)", total, len(latencies), last - start, latencies)


RAW_WARM_UP = 50
"""Records sent to the raw topic, and received, before its timed run. A new topic's
partitions are fetched only once the consumer has their metadata: without the warm-up
its first records waited 400-500 ms for that, and the raw p99 measured it, not the
broker (the services' topics have long been fetched when a hop is measured)."""


def raw_broker(settings: StackSettings, rate: float, seconds: float, topic: str) -> HopResult:
    """The same schedule produced straight to the broker: what the hop costs beyond it."""
    run = f"raw-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.kafka, [topic])
    receiver = Receiver(settings, run, topic)
    receiver.ready.wait(30)
    producer = build_producer(settings.kafka, **{"linger.ms": 0})
    for n in range(RAW_WARM_UP):
        producer.produce(topic, key=f"{run}-{n % 50}",
                         headers=[("ce_id", f"warm-up-{n}".encode())])
    producer.flush(10)
    receiver.wait_for(RAW_WARM_UP, 30)
    sent: dict[bytes, float] = {}
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        if now < (due := start + n / rate):
            time.sleep(due - now)
        event_id = str(uuid.uuid4()).encode()
        sent[event_id] = time.monotonic()
        producer.produce(topic, key=f"{run}-{n % 50}", headers=[("ce_id", event_id)])
        producer.poll(0)
        n += 1
    producer.flush(10)
    receiver.wait_for(RAW_WARM_UP + n, 30)
    receiver.stop.set()
    latencies = [(receiver.arrivals[e] - t) * 1000 for e, t in sent.items()
                 if e in receiver.arrivals]
    return HopResult("raw broker", n, len(latencies), seconds, latencies)


def pgbench_commit_rate(settings: StackSettings, seconds: int = 10) -> float:
    """pgbench -N (no branch-table contention) against a scratch database on the same server."""
    bindir = postgres_bindir()
    if bindir is None:
        return float("nan")
    with psycopg.connect(settings.database_dsn("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname='bench'").fetchone():
            conn.execute("CREATE DATABASE bench")
    common = ["-h", "127.0.0.1", "-p", str(settings.postgres_port), "-U", "postgres"]
    subprocess.run([str(bindir / "pgbench"), "-i", "-q", *common, "bench"], check=True,
                   capture_output=True)
    out = subprocess.run([str(bindir / "pgbench"), "-N", "-c", "4", "-j", "2", "-T",
                          str(seconds), *common, "bench"], check=True, capture_output=True,
                         text=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("tps"))
    return float(line.split("=")[1].split()[0])


def main(settings: StackSettings, rate: float, seconds: float, total: int) -> dict[str, object]:
    print(f"hop benchmark: poll.interval.ms={settings.cdc_poll_interval_ms}, "
          f"steady {rate:.0f}/s for {seconds:.0f}s, then {total} events as fast as possible")
    results = [steady(settings, rate, seconds),
               raw_broker(settings, rate, seconds, f"bench-raw-{uuid.uuid4().hex[:8]}"),
               flood(settings, total, writers=4)]
    tps = pgbench_commit_rate(settings)
    print(f"\n{'run':<18}{'sent':>7}{'recv':>7}{'events/s':>10}{'p50 ms':>9}{'p90 ms':>9}"
          f"{'p99 ms':>9}{'max ms':>9}")
    for r in results:
        print(f"{r.label:<18}{r.sent:>7}{r.received:>7}{r.received / r.seconds:>10.0f}"
              f"{r.percentile(50):>9.1f}{r.percentile(90):>9.1f}{r.percentile(99):>9.1f}"
              f"{max(r.latencies_ms, default=0):>9.1f}")
    print(f"\nreference: pgbench -N -c 4 -j 2 on the same server: {tps:.0f} commits/s")
    mean = statistics.mean(results[0].latencies_ms) if results[0].latencies_ms else 0
    print(f"steady mean latency {mean:.1f} ms")
    hop, raw, most = results
    print(f"summary: hop p50 {hop.percentile(50):.1f} ms, p99 {hop.percentile(99):.1f} ms at"
          f" {rate:.0f}/s; raw broker p50 {raw.percentile(50):.1f} ms, p99"
          f" {raw.percentile(99):.1f} ms (hop/raw p50 x"
          f"{hop.percentile(50) / max(raw.percentile(50), 0.001):.1f}); max"
          f" {most.received / most.seconds:.0f} events/s")
    return {"rate_per_s": rate, "hop_p50_ms": hop.percentile(50), "hop_p99_ms": hop.percentile(99),
            "raw_p50_ms": raw.percentile(50), "raw_p99_ms": raw.percentile(99),
            "hop_over_raw_p50": hop.percentile(50) / max(raw.percentile(50), 0.001),
            "max_events_per_s": most.received / most.seconds,
            "pgbench_commits_per_s": tps}
