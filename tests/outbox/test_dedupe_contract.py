"""The dedupe contract (``choreo.outbox.testing.DedupeStoreContract``, shipped in the
package for a team's own store) run against every store choreo has: the in-memory fake,
the no-op, and real Redis."""

from __future__ import annotations

import uuid

import pytest

from choreo.outbox.dedupe import DedupeStore, InboxOnly, MemoryDedupe, RedisDedupe
from choreo.outbox.testing import DedupeStoreContract
from choreo.stack.settings import StackSettings


class TestMemoryDedupe(DedupeStoreContract):
    def make_store(self) -> DedupeStore:
        return MemoryDedupe()


class TestInboxOnly(DedupeStoreContract):
    remembers = False

    def make_store(self) -> DedupeStore:
        return InboxOnly()


@pytest.mark.stack
class TestRedisDedupe(DedupeStoreContract):
    @pytest.fixture(autouse=True)
    def _redis(self, running_stack: StackSettings) -> None:
        self.redis_url = running_stack.redis_url

    def make_store(self) -> DedupeStore:
        return RedisDedupe(self.redis_url, ttl_s=60)


def test_the_memory_store_forgets_the_oldest_beyond_its_bound() -> None:
    store = MemoryDedupe(max_keys=3)
    event_ids = [str(uuid.uuid4()) for _ in range(5)]
    store.mark_many("c", event_ids)
    assert store.seen_many("c", event_ids) == set(event_ids[2:])


@pytest.mark.stack
def test_redis_keys_expire_with_the_ttl(running_stack: StackSettings) -> None:
    store = RedisDedupe(running_stack.redis_url, ttl_s=60)
    event_id = str(uuid.uuid4())
    store.mark("c", event_id)
    assert 0 < store.client.ttl(RedisDedupe.key("c", event_id)) <= 60
    store.client.close()
