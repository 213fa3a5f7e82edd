"""choreo_consumer_lag shows owned partitions only (pure: no broker, no database)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from choreo.outbox.codec import EventCodec
from choreo.outbox.consumer import ConsumerRuntime
from choreo.outbox.dedupe import MemoryDedupe
from choreo.schemas.catalog import SchemaCatalog


class FakeAssignment:
    def __init__(self, *rounds: dict[tuple[str, int], int]) -> None:
        self.rounds = list(rounds)

    def lag(self) -> dict[tuple[str, int], int]:
        return self.rounds.pop(0)


def lag_samples(consumer: str) -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["partition"]): s.value
            for metric in REGISTRY.collect() if metric.name == "choreo_consumer_lag"
            for s in metric.samples if s.labels.get("consumer") == consumer}


def test_a_partition_given_up_leaves_the_lag_gauge():
    runtime = ConsumerRuntime(group_id="lag-gauge-probe", kafka="127.0.0.1:1",
                              database_url="postgresql://nowhere", handlers={},
                              codec=EventCodec(SchemaCatalog.load()), dedupe=MemoryDedupe())
    assignment = FakeAssignment({("order.events", 0): 5, ("order.events", 1): 7},
                                {("order.events", 1): 2})
    runtime._update_lag(assignment)  # type: ignore[arg-type]
    assert lag_samples("lag-gauge-probe") == {("order.events", "0"): 5, ("order.events", "1"): 7}
    runtime._update_lag(assignment)  # type: ignore[arg-type]
    assert lag_samples("lag-gauge-probe") == {("order.events", "1"): 2}
