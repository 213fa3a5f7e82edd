"""One contract for every ``DedupeStore``: the in-memory fake, the no-op, and real Redis.

The inbox is the guarantee, so a store may forget (TTL, eviction, Redis down); what it
must never do is answer "seen" for an event nobody marked, or mix up consumers. Stores
that remember must remember what was marked, one at a time or in a batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from choreo.outbox.dedupe import DedupeStore, InboxOnly, MemoryDedupe, RedisDedupe
from choreo.stack.settings import StackSettings

REMEMBERING = ["memory", pytest.param("redis", marks=pytest.mark.stack)]
EVERY = [*REMEMBERING, "inbox-only"]


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[DedupeStore]:
    if request.param == "memory":
        yield MemoryDedupe()
    elif request.param == "inbox-only":
        yield InboxOnly()
    else:
        settings: StackSettings = request.getfixturevalue("running_stack")
        redis_store = RedisDedupe(settings.redis_url, ttl_s=60)
        yield redis_store
        redis_store.client.close()


def ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


@pytest.mark.parametrize("store", EVERY, indirect=True)
def test_nothing_unmarked_is_ever_seen(store: DedupeStore) -> None:
    consumer = f"c-{uuid.uuid4().hex[:8]}"
    marked, unmarked = ids(3), ids(3)
    store.mark_many(consumer, marked)

    assert not any(store.seen(consumer, event_id) for event_id in unmarked)
    assert store.seen_many(consumer, unmarked) == set()
    assert store.seen_many(consumer, []) == set()
    store.mark_many(consumer, [])  # nothing to do is no error


@pytest.mark.parametrize("store", EVERY, indirect=True)
def test_one_consumer_marks_nothing_for_another(store: DedupeStore) -> None:
    first, second = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    event_ids = ids(2)
    store.mark_many(first, event_ids)
    store.mark(first, event_ids[0])

    assert store.seen_many(second, event_ids) == set()
    assert not store.seen(second, event_ids[0])


@pytest.mark.parametrize("store", REMEMBERING, indirect=True)
def test_what_was_marked_is_seen_singly_and_in_batches(store: DedupeStore) -> None:
    consumer = f"c-{uuid.uuid4().hex[:8]}"
    single, batch, fresh = ids(1)[0], ids(4), ids(2)
    store.mark(consumer, single)
    store.mark_many(consumer, batch)

    assert store.seen(consumer, single)
    assert all(store.seen(consumer, event_id) for event_id in batch)
    assert store.seen_many(consumer, [single, *batch, *fresh]) == {single, *batch}


def test_the_memory_store_forgets_the_oldest_beyond_its_bound() -> None:
    store = MemoryDedupe(max_keys=3)
    event_ids = ids(5)
    store.mark_many("c", event_ids)
    assert store.seen_many("c", event_ids) == set(event_ids[2:])


@pytest.mark.stack
def test_redis_keys_expire_with_the_ttl(running_stack: StackSettings) -> None:
    store = RedisDedupe(running_stack.redis_url, ttl_s=60)
    event_id = ids(1)[0]
    store.mark("c", event_id)
    assert 0 < store.client.ttl(RedisDedupe.key("c", event_id)) <= 60
    store.client.close()
