"""Admission control at the intake: a token bucket per client (429) and load shedding (503).

Both decide before an order is written, so a refused request creates nothing and leaves
its Idempotency-Key unused: the same request later, with the same key, is a first try.

*Per client* (:class:`RateLimiter`): a bucket of ``burst`` tokens refilled at
``rate_per_s``; a request takes one or is refused with the seconds until one is back. The
client is the ``X-API-Key`` header when a request sends one, else the order's customer
id. Memory is bounded: a bucket that has refilled completely is the same as no bucket,
so idle clients are dropped as they fall out of use, and at most ``max_clients`` are
kept (the least recently seen goes first; it then starts again with a full bucket).

*Overload* (:class:`Backlog`): an order leaves PENDING only once every hop of its saga
has run (CDC, broker, inventory, payments, the psp, the orders worker), so the number of
PENDING orders in the service's own database is the backlog of the whole pipeline, read
with one query on a partial index. It is sampled in the background every ``sample_s``,
never per request; a sample that failed or is stale counts as "not overloaded", since a
request that then needs the database gets its own 503 from the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge
from psycopg_pool import AsyncConnectionPool

API_KEY_HEADER = "X-API-Key"
COUNT_PENDING = """
SELECT count(*) FROM (SELECT 1 FROM orders WHERE status = 'PENDING' LIMIT %s) AS pending
"""
"""Counts up to the threshold and no further: a deep backlog costs no more to read."""
SAMPLE_WAIT_S = 1.0
"""How long the sampler waits for a pool connection before skipping a round."""

SHED = Counter("choreo_orders_shed_total",
               "POST /orders refused before anything was written, by reason",
               ["reason"])
PENDING = Gauge("choreo_orders_pending",
                "Orders PENDING in the orders database at the last sample (counted up to"
                " the shedding threshold)")
for _reason in ("rate_limited", "overloaded"):
    SHED.labels(_reason)  # both series exist from the start, at 0

log = logging.getLogger("orders")


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per client in one process (each API replica limits on its own)."""

    def __init__(self, rate_per_s: float, burst: int, max_clients: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ValueError("rate_per_s must be a positive number")
        if burst < 1 or max_clients < 1:
            raise ValueError("burst and max_clients must be at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, client: str) -> float:
        """Take a token for ``client``: 0.0 if granted, else the seconds until one is."""
        now = self._clock()
        bucket = self._buckets.pop(client, None)
        tokens = self.burst if bucket is None else self._refilled(bucket, now)
        self._evict(now)
        if tokens >= 1:
            self._buckets[client] = _Bucket(tokens - 1, now)
            return 0.0
        self._buckets[client] = _Bucket(tokens, now)
        return (1 - tokens) / self.rate_per_s

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self.burst, bucket.tokens + (now - bucket.at) * self.rate_per_s)

    def _evict(self, now: float) -> None:
        """Drop the least recently seen clients while their bucket is full again, and
        any beyond ``max_clients - 1`` (room for the one being added)."""
        while self._buckets:
            client, oldest = next(iter(self._buckets.items()))
            if len(self._buckets) < self.max_clients and \
                    self._refilled(oldest, now) < self.burst:
                return
            del self._buckets[client]


def client_of(headers: Any, customer_id: str) -> str:
    """Who an unauthenticated request counts against: its API key when it sends one, else
    its customer (an authenticated one counts against its caller, ``http.CALLER``).

    The key is kept only as a digest, so no credential sits in the limiter's memory.
    """
    api_key = headers.get(API_KEY_HEADER, "")
    if api_key:
        return "key:" + hashlib.blake2b(api_key.encode(), digest_size=16).hexdigest()
    return "customer:" + customer_id


def retry_after(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


class Backlog:
    """The last sampled number of PENDING orders, and whether it is past the threshold."""

    def __init__(self, max_pending: int, sample_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_pending = max_pending
        self.sample_s = sample_s
        self._clock = clock
        self._pending: int | None = None
        self._at = -math.inf

    @property
    def pending(self) -> int | None:
        """The last sample while fresh (within three sampling intervals), else None."""
        if self._clock() - self._at > 3 * self.sample_s:
            return None
        return self._pending

    def record(self, pending: int | None) -> None:
        self._pending, self._at = pending, self._clock()
        if pending is not None:
            PENDING.set(pending)

    def overloaded(self) -> bool:
        pending = self.pending
        return pending is not None and pending >= self.max_pending

    async def sample(self, pool: AsyncConnectionPool) -> None:
        try:
            async with pool.connection(SAMPLE_WAIT_S) as conn:
                row = await (await conn.execute(COUNT_PENDING, (self.max_pending,))).fetchone()
        except Exception as exc:  # noqa: BLE001 - an unknown backlog sheds nothing
            if self._pending is not None:
                log.warning("cannot sample the pending orders: %s", exc)
            self.record(None)
            return
        self.record(int(row[0]) if row else 0)

    async def run(self, pool: AsyncConnectionPool) -> None:
        while True:
            await self.sample(pool)
            await asyncio.sleep(self.sample_s)

    @contextlib.asynccontextmanager
    async def running(self, pool: AsyncConnectionPool) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(pool), name="pending-orders-sampler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
