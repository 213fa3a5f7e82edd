"""Property: whatever the redelivery sequence and whatever Redis does, one effect per event."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo.outbox.consumer import handle_once
from choreo.outbox.dedupe import MemoryDedupe
from choreo.outbox.delivery import ReceivedEvent

pytestmark = pytest.mark.postgres


class UnreliableDedupe(MemoryDedupe):
    """Redis as it may behave: keys lost (flush, eviction) or the server unreachable."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def seen(self, consumer: str, event_id: str) -> bool:
        return False if self.down else super().seen(consumer, event_id)

    def mark(self, consumer: str, event_id: str) -> None:
        if not self.down:
            super().mark(consumer, event_id)


def event(event_id: uuid.UUID) -> ReceivedEvent:
    return ReceivedEvent(event_id, "OrderConfirmed", "k", {}, "tests", "", "", "test")


STEP = st.one_of(
    st.tuples(st.just("deliver"), st.integers(0, 5)),
    st.tuples(st.just("crash_before_commit"), st.integers(0, 5)),
    st.tuples(st.just("flush"), st.none()),
    st.tuples(st.just("redis_down"), st.booleans()),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, max_size=40))
def test_one_effect_per_event(probe_database: str, steps: list[tuple[str, Any]]) -> None:
    consumer = f"prop-{uuid.uuid4().hex[:8]}"
    ids = [uuid.uuid4() for _ in range(6)]
    dedupe = UnreliableDedupe()
    delivered: set[uuid.UUID] = set()

    def effect(received: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        conn.execute("INSERT INTO effects (consumer, key, event_id, value) VALUES (%s,'k',%s,0)",
                     (consumer, received.event_id))

    def crash(received: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        effect(received, conn)
        raise ConnectionError("process died before commit")

    with psycopg.connect(probe_database, autocommit=True) as conn:
        for action, argument in steps:
            if action == "flush":
                dedupe.keys.clear()
            elif action == "redis_down":
                dedupe.down = argument
            else:
                event_id = ids[argument]
                if dedupe.seen(consumer, str(event_id)):
                    continue
                handler = effect if action == "deliver" else crash
                try:
                    handle_once(conn, consumer, handler, event(event_id))
                except ConnectionError:
                    continue
                dedupe.mark(consumer, str(event_id))
                delivered.add(event_id)
        rows = conn.execute("SELECT event_id, count(*) FROM effects WHERE consumer = %s"
                            " GROUP BY event_id", (consumer,)).fetchall()
    assert {row[0]: row[1] for row in rows} == dict.fromkeys(delivered, 1)
