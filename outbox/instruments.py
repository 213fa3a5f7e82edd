"""A consumer's metrics, spans and log fields, one small call for each thing that happens.

Why apart: the loop and the batch logic only say what happened (an outcome, a retry, a
receipt, a pause); how that is counted, timed and traced, and which labels a metric
gets, is decided here once, so neither reads as bookkeeping.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from contextlib import contextmanager

from opentelemetry.context import Context

from choreo.outbox.delivery import Delivery, ReceivedEvent
from choreo.outbox.metrics import EVENTS, HANDLER_SECONDS, HOP_SECONDS, LAG, PAUSED, PAUSES, RETRIES
from choreo.outbox.tracing import consumed_span, received, trace_id_of

Partition = tuple[str, int]


class Instruments:
    def __init__(self, group_id: str, handled_types: Container[str]) -> None:
        self.group_id = group_id
        self.handled_types = handled_types
        self.fields = {"consumer": group_id}
        """The log fields of a line about the consumer as a whole."""
        self._hops: dict[str, Context] = {}
        """The relay span of each delivery of the batch in hand, by origin (``receive``)."""
        self._lag: dict[Partition, int] = {}

    def type_label(self, event_type: str) -> str:
        """A metric label from a header anyone can write: only known types, or "other"."""
        return event_type if event_type in self.handled_types else "other"

    def log_context(self, delivery: Delivery, traceparent: str = "") -> dict[str, str]:
        """The ids an operator searches the JSON logs by."""
        return {"event_id": delivery.event_id, "event_type": delivery.event_type,
                "aggregate_id": delivery.key, "trace_id": trace_id_of(traceparent),
                **self.fields}

    def outcome(self, event_type: str, outcome: str) -> None:
        EVENTS.labels(self.group_id, self.type_label(event_type), outcome).inc()

    def retried(self, event_type: str) -> None:
        RETRIES.labels(self.group_id, self.type_label(event_type)).inc()

    def receive(self, deliveries: list[Delivery]) -> None:
        """Each polled delivery's hop, once: the histogram, and the relay span its handling
        (every attempt of it) continues."""
        self._hops = {}
        for delivery in deliveries:
            hop = received(delivery, self.group_id)
            if hop.seconds is not None:
                HOP_SECONDS.labels(self.group_id, delivery.topic).observe(hop.seconds)
            if hop.context is not None:
                self._hops[delivery.origin] = hop.context

    @contextmanager
    def handling(self, event: ReceivedEvent) -> Iterator[None]:
        """The handler's span (under its delivery's relay span) and its time."""
        with (
            consumed_span(event, self.group_id, self._hops.get(event.origin)),
            HANDLER_SECONDS.labels(self.group_id, event.event_type).time(),
        ):
            yield

    def paused(self, paused: bool) -> None:
        PAUSED.labels(self.group_id).set(1 if paused else 0)
        if paused:
            PAUSES.labels(self.group_id).inc()

    def lag(self, lag: dict[Partition, int]) -> None:
        """The gauge covers owned partitions only: a partition given up to a replica
        drops out instead of showing its last lag forever."""
        previous, self._lag = self._lag, lag
        for topic, partition in previous.keys() - lag.keys():
            LAG.remove(self.group_id, topic, str(partition))
        for (topic, partition), behind in lag.items():
            LAG.labels(self.group_id, topic, partition).set(behind)

    @property
    def behind(self) -> int:
        """Messages behind in all owned partitions, as last measured (``lag``)."""
        return sum(self._lag.values())
