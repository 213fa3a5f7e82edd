"""Three Kafka nodes (``choreo up --brokers 3``): each SIGKILLed in turn, the active
controller first, under a steady acknowledged load: not one acknowledged record lost,
none out of order per key, and how long producers and consumers stalled printed.

A cluster of its own (its own state folder and ports, the stack's broker command and
configuration), so the suite's single-node broker is untouched.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from choreo.outbox.kafka import build_consumer, build_producer, ensure_topics
from choreo.outbox.topics import TopicSettings
from choreo.stack import launcher
from choreo.stack.broker import broker_components, kafka_tool_command, node_name
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TOPIC, PARTITIONS, KEYS, RATE = "failover", 3, 12, 200


@dataclasses.dataclass
class Cluster:
    settings: StackSettings
    registry: ProcessRegistry


@pytest.fixture
def three_nodes(stack_settings: StackSettings, tmp_path: Path) -> Iterator[Cluster]:
    settings = dataclasses.replace(
        stack_settings, state_dir=tmp_path, artifact_cache=stack_settings.artifact_dir,
        brokers=3, kafka_port=stack_settings.kafka_port + 20,
        kafka_controller_port=stack_settings.kafka_port + 21)
    settings.validate()
    registry = ProcessRegistry(tmp_path / "pids", tmp_path / "logs")
    try:
        launcher.start_components(broker_components(settings), registry, settings,
                                  lambda line: None)
        yield Cluster(settings, registry)
    finally:
        launcher.stop_together(registry, [node_name(n) for n in settings.broker_nodes()],
                               lambda line: None)


def active_controller(settings: StackSettings) -> int:
    described = subprocess.run(kafka_tool_command(settings, "metadata-quorum",
                                                  ["describe", "--status"]),
                               capture_output=True, text=True, timeout=60, check=True)
    found = re.search(r"LeaderId:\s+(\d+)", described.stdout)
    assert found, described.stdout
    return int(found.group(1))


def fully_replicated(settings: StackSettings) -> bool:
    topic = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0}
                        ).list_topics(TOPIC, timeout=5).topics[TOPIC]
    return all(len(p.isrs) == 3 for p in topic.partitions.values())


class Load:
    """An idempotent, acks=all producer at a steady rate and a reader of every partition,
    each noting the longest time it went without progress."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.stop = threading.Event()
        self.acked: dict[str, list[int]] = defaultdict(list)
        self.read: dict[str, list[int]] = defaultdict(list)
        self.producer_stall_s = self.consumer_stall_s = 0.0
        self.errors: list[str] = []
        """Failed deliveries and anything a thread raised: the test asserts there is none."""
        self.threads = [threading.Thread(target=self.noting_errors(self.produce), daemon=True),
                        threading.Thread(target=self.noting_errors(self.consume), daemon=True)]

    def noting_errors(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except Exception as error:  # noqa: BLE001 - reported by the test, not the thread
                self.errors.append(f"{body.__name__}: {error!r}")
                self.stop.set()
        return run

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def produce(self) -> None:
        producer = build_producer(self.bootstrap, **{"log_level": 0,
                                                     "delivery.timeout.ms": 120000})
        last = time.monotonic()

        def delivered(error: KafkaError | None, message: Message) -> None:
            nonlocal last
            if error is not None:  # within the delivery timeout, nothing may fail
                self.errors.append(f"delivery failed: {error}")
                return
            now = time.monotonic()
            self.producer_stall_s = max(self.producer_stall_s, now - last)
            last = now
            self.acked[message.key().decode()].append(int(message.value()))

        sequence, started = 0, time.monotonic()
        while not self.stop.is_set():
            if (wait := started + sequence / RATE - time.monotonic()) > 0:
                time.sleep(wait)
            producer.produce(TOPIC, key=f"k{sequence % KEYS}", value=str(sequence),
                             on_delivery=delivered)
            producer.poll(0)
            sequence += 1
        if remaining := producer.flush(120):
            self.errors.append(f"{remaining} records never acknowledged")

    def consume(self) -> None:
        consumer = build_consumer(self.bootstrap, "failover-reader", log_level=0)
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        last = time.monotonic()
        try:
            while self.producing() or (self.behind() and time.monotonic() - last < 60):
                for message in consumer.consume(500, 0.2):
                    if message.error():
                        continue
                    now = time.monotonic()
                    if not self.stop.is_set():
                        self.consumer_stall_s = max(self.consumer_stall_s, now - last)
                    last = now
                    self.read[message.key().decode()].append(int(message.value()))
        finally:
            consumer.close()

    def producing(self) -> bool:
        """Until the producer's flush returns, acknowledgements are still arriving: the
        reader that stopped at the stop signal missed the last ones (it did, once)."""
        return self.threads[0].is_alive()

    def behind(self) -> bool:
        return sum(map(len, self.read.values())) < sum(map(len, self.acked.values()))


def test_each_node_sigkilled_in_turn_loses_no_acknowledged_record(three_nodes: Cluster) -> None:
    settings, registry = three_nodes.settings, three_nodes.registry
    ensure_topics(settings.kafka_bootstrap, [TOPIC], TopicSettings(partitions=PARTITIONS))
    components = {c.name: c for c in broker_components(settings)}
    first = active_controller(settings)
    victims = [first, *(n for n in settings.broker_nodes() if n != first)]
    back_after: list[float] = []
    with Load(settings.kafka_bootstrap) as load:
        time.sleep(3)
        for node in victims:
            name = node_name(node)
            killed = time.monotonic()
            registry.kill(name)
            time.sleep(2)  # down for a while under load, not just a blink
            launcher.launch(components[name], registry)
            launcher.wait_healthy(components[name], registry, settings.start_timeout_s)
            deadline = time.monotonic() + 120
            while not fully_replicated(settings):
                assert time.monotonic() < deadline, f"{name}'s replicas never caught up"
                time.sleep(0.5)
            back_after.append(time.monotonic() - killed)
        time.sleep(3)
    assert not load.errors, load.errors
    acked = sum(map(len, load.acked.values()))
    print(f"\nthree nodes, {RATE}/s acks=all: killed {', '.join(map(node_name, victims))}"
          f" (controller {node_name(first)} first); each back in sync after"
          f" {', '.join(f'{s:.1f}s' for s in back_after)}; {acked} records acknowledged;"
          f" longest stall: producer {load.producer_stall_s:.1f}s,"
          f" consumer {load.consumer_stall_s:.1f}s")
    assert acked > RATE * 10
    for key, values in load.acked.items():
        read = load.read[key]
        assert set(values) <= set(read), f"{key}: acknowledged records lost"
        deduplicated = list(dict.fromkeys(read))
        assert deduplicated == sorted(deduplicated), f"{key}: out of order"
