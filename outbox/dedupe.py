"""The fast path of effectively-once handling: "have I already handled this event?".

Only an optimisation. The inbox row written in the handler's transaction is the
guarantee, so every failure here degrades to "not seen" and costs only speed: Redis
down, flushed or evicted never causes a double effect.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Protocol

import redis

from choreo.outbox.errors import ConfigError

log = logging.getLogger(__name__)


REDIS_DEDUPE_PREFIX = "choreo:seen"

class DedupeStore(Protocol):
    def seen(self, consumer: str, event_id: str) -> bool: ...

    def mark(self, consumer: str, event_id: str) -> None: ...

    def seen_many(self, consumer: str, event_ids: list[str]) -> set[str]:
        """The ids of a polled batch already handled: one round trip, not one per event."""
        ...

    def mark_many(self, consumer: str, event_ids: list[str]) -> None: ...


class InboxOnly:
    """Remembers nothing: the inbox alone decides, as when Redis is down (a benchmark's
    reference, and the floor every store must stay above)."""

    def seen(self, consumer: str, event_id: str) -> bool:
        return False

    def mark(self, consumer: str, event_id: str) -> None:
        return None

    def seen_many(self, consumer: str, event_ids: list[str]) -> set[str]:
        return set()

    def mark_many(self, consumer: str, event_ids: list[str]) -> None:
        return None


class MemoryDedupe:
    """For pure tests and for running without Redis; forgets the oldest beyond ``max_keys``.

    Forgetting is safe (the inbox is the guarantee) and keeps a long-running process
    without Redis from growing without bound.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self.keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    def seen(self, consumer: str, event_id: str) -> bool:
        return (consumer, event_id) in self.keys

    def mark(self, consumer: str, event_id: str) -> None:
        self.keys[(consumer, event_id)] = None
        self.keys.move_to_end((consumer, event_id))
        while len(self.keys) > self.max_keys:
            self.keys.popitem(last=False)

    def seen_many(self, consumer: str, event_ids: list[str]) -> set[str]:
        return {event_id for event_id in event_ids if self.seen(consumer, event_id)}

    def mark_many(self, consumer: str, event_ids: list[str]) -> None:
        for event_id in event_ids:
            self.mark(consumer, event_id)


class RedisDedupe:
    """Redis keys with a TTL; after a failure Redis is left alone for a pause.

    The pause keeps a dead Redis from adding a connect timeout to every event.
    """

    def __init__(self, url: str, ttl_s: int = 7 * 24 * 3600, pause_after_error_s: float = 2.0,
                 password: str | None = None):
        """``password`` (``CHOREO_REDIS_PASSWORD``) wins over one in the URL, so the URL
        can be configuration and the password a mounted secret."""
        self.client = redis.Redis.from_url(
            url, socket_timeout=0.2, socket_connect_timeout=0.2, retry_on_timeout=False,
            **({"password": password} if password else {}))
        self.ttl_s = ttl_s
        self.pause_after_error_s = pause_after_error_s
        self._paused_until = 0.0

    def check_credentials(self) -> None:
        """Refuse to start with credentials Redis rejects: the store would be skipped on
        every event, silently, for as long as the service runs. Redis being down is fine
        (it only speeds dedupe up; the inbox decides), and is not checked here."""
        try:
            self.client.ping()
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as error:
            if not self.client.connection_pool.connection_kwargs.get("password"):
                raise ConfigError("Redis wants a password: set CHOREO_REDIS_PASSWORD (or"
                                  " CHOREO_REDIS_PASSWORD_FILE)") from None
            raise ConfigError(f"Redis refused this client's credentials (CHOREO_REDIS_URL,"
                              f" CHOREO_REDIS_PASSWORD): {error}") from None
        except redis.RedisError:
            pass  # down or unreachable: the runtime rides that out

    @staticmethod
    def key(consumer: str, event_id: str) -> str:
        return f"{REDIS_DEDUPE_PREFIX}:{consumer}:{event_id}"

    def _available(self) -> bool:
        return time.monotonic() >= self._paused_until

    def _failed(self, error: Exception) -> None:
        log.warning("redis dedupe unavailable, inbox only for %.1fs: %s",
                    self.pause_after_error_s, error)
        self._paused_until = time.monotonic() + self.pause_after_error_s

    def seen(self, consumer: str, event_id: str) -> bool:
        if not self._available():
            return False
        try:
            return bool(self.client.exists(self.key(consumer, event_id)))
        except redis.RedisError as error:
            self._failed(error)
            return False

    def mark(self, consumer: str, event_id: str) -> None:
        self.mark_many(consumer, [event_id])

    def seen_many(self, consumer: str, event_ids: list[str]) -> set[str]:
        if not event_ids or not self._available():
            return set()
        try:
            found = self.client.mget([self.key(consumer, event_id) for event_id in event_ids])
        except redis.RedisError as error:
            self._failed(error)
            return set()
        return {event_id for event_id, value in zip(event_ids, found, strict=True) if value}

    def mark_many(self, consumer: str, event_ids: list[str]) -> None:
        if not event_ids or not self._available():
            return
        try:
            with self.client.pipeline(transaction=False) as pipeline:
                for event_id in event_ids:
                    pipeline.set(self.key(consumer, event_id), b"1", ex=self.ttl_s)
                pipeline.execute()
        except redis.RedisError as error:
            self._failed(error)
