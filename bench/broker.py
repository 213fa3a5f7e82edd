"""The embedded broker alone: what its fetches cost by partition count and by history.

Starts a scratch broker with the stack's own command and configuration on free ports and
a log folder of its own (its own process,
stopped by pid at the end, whatever happens), assigns three consumers every partition
of two topics with the services' fetch wait, and measures the broker's CPU while they
poll idle and while 100 records/s go through one topic, first on empty topics and then
after one-record batches were written to it beforehand; then how fast a new consumer
reads that topic from its start, which is what a consumer that fell behind does. The
stack need not run. On the old in-memory broker it showed why the stack got slower with
use and a backlog hardly drained; on Apache Kafka it is the check that neither happens
(docs/benchmarks.md).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from choreo.outbox.kafka import build_consumer, build_producer, ensure_topics
from choreo.outbox.topics import TopicSettings
from choreo.stack.broker import broker_component
from choreo.stack.components import free_port
from choreo.stack.cpu import CpuMeter
from choreo.stack.settings import StackSettings

CONSUMERS = 3
RATE = 100
SECONDS = 10.0


@dataclass(frozen=True)
class BrokerCost:
    partitions: int
    history: int
    idle_percent: float
    loaded_percent: float
    catch_up_per_s: float
    """Records a second a new consumer reads from the start of the loaded topic."""


def broker_percent(pid: int, during: Callable[[], None]) -> float:
    """The broker's share of one core while ``during`` runs."""
    meter = CpuMeter({"broker": pid})
    during()
    return meter.read().percent("broker")


def polling(consumers: list[Consumer], stop: threading.Event) -> list[threading.Thread]:
    def loop(consumer: Consumer) -> None:
        while not stop.is_set():
            consumer.poll(0.05)

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in consumers]
    for thread in threads:
        thread.start()
    return threads


def catch_up_rate(bootstrap: str, topic: str, partitions: int, records: int) -> float:
    """Records a second read from the start of ``topic`` (all ``records`` of it, or for
    ``SECONDS`` at most): reading behind the end, as a consumer with a backlog does."""
    consumer = build_consumer(bootstrap, "catch-up", log_level=0)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    read, started = 0, time.monotonic()
    try:
        while read < records and time.monotonic() - started < SECONDS:
            read += sum(1 for message in consumer.consume(500, 0.1) if not message.error())
    finally:
        consumer.close()
    return read / (time.monotonic() - started)


def measure(settings: StackSettings, partitions: int, history: int) -> BrokerCost:
    scratch = replace(settings, kafka_port=free_port(), kafka_controller_port=free_port(),
                      brokers=1,
                      state_dir=Path(tempfile.mkdtemp(prefix="choreo-bench-broker-")),
                      artifact_cache=settings.artifact_dir)
    bootstrap = scratch.kafka_bootstrap
    # The stack's own broker command and configuration, on ports and a log of its own.
    component = broker_component(scratch)
    assert component.prepare is not None
    component.prepare()
    broker = subprocess.Popen(component.command,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    consumers: list[Consumer] = []
    pollers: list[threading.Thread] = []
    try:
        started = time.monotonic()
        while not component.healthy():
            if broker.poll() is not None or time.monotonic() - started > 30:
                raise RuntimeError(f"the scratch broker on {bootstrap} did not start")
            time.sleep(0.2)
        topics = [f"loaded-{partitions}", f"quiet-{partitions}"]
        ensure_topics(bootstrap, topics, TopicSettings(partitions=partitions))
        producer = build_producer(bootstrap, **{"linger.ms": 0, "log_level": 0})
        for n in range(history):  # one batch per record, as Connect writes at these rates
            producer.produce(topics[0], value=b"x" * 200, partition=n % partitions)
            producer.flush()
        for n in range(CONSUMERS):
            consumer = build_consumer(bootstrap, f"probe-{n}", log_level=0)
            consumer.assign([TopicPartition(t, p, -1) for t in topics for p in range(partitions)])
            consumers.append(consumer)
        pollers = polling(consumers, stop)
        time.sleep(5)
        idle = broker_percent(broker.pid, lambda: time.sleep(SECONDS))

        def produce_steadily() -> None:
            start = time.monotonic()
            for n in range(int(RATE * SECONDS)):
                if (wait := start + n / RATE - time.monotonic()) > 0:
                    time.sleep(wait)
                producer.produce(topics[0], value=b"y" * 200, partition=n % partitions)
                producer.poll(0)
            producer.flush(10)

        loaded = broker_percent(broker.pid, produce_steadily)
        catch_up = catch_up_rate(bootstrap, topics[0], partitions,
                                 history + int(RATE * SECONDS))
        return BrokerCost(partitions, history, idle, loaded, catch_up)
    finally:
        stop.set()
        for poller in pollers:  # a consumer must not be closed while a thread polls it
            poller.join()
        for consumer in consumers:
            consumer.close()
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        shutil.rmtree(scratch.state_dir, ignore_errors=True)


def main(settings: StackSettings, partitions: list[int], histories: list[int]
         ) -> list[dict[str, object]]:
    print(f"broker benchmark: a scratch broker, {CONSUMERS} consumers assigned every partition"
          f" of two topics, then {RATE} records/s through one for {SECONDS:.0f}s")
    print(f"\n{'partitions':>10}{'history':>10}{'idle %':>9}{'loaded %':>10}"
          f"{'catch-up/s':>12}")
    results = []
    for history in histories:
        for count in partitions:
            cost = measure(settings, count, history)
            results.append(cost)
            print(f"{cost.partitions:>10}{cost.history:>10}{cost.idle_percent:>9.1f}"
                  f"{cost.loaded_percent:>10.1f}{cost.catch_up_per_s:>12.0f}", flush=True)
    print("\n% of one core used by the broker; history: one-record batches written to the"
          " loaded topic before the consumers start; catch-up: records/s a new consumer"
          " reads from the loaded topic's start")
    first, last = results[0], results[-1]
    print(f"summary: broker idle {first.idle_percent:.1f}% -> {last.idle_percent:.1f}%,"
          f" loaded {first.loaded_percent:.1f}% -> {last.loaded_percent:.1f}%, catch-up"
          f" {first.catch_up_per_s:.0f} -> {last.catch_up_per_s:.0f} records/s from"
          f" {first.partitions} partitions/{first.history} batches to"
          f" {last.partitions} partitions/{last.history} batches")
    return [asdict(cost) for cost in results]
