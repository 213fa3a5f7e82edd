"""Which failures are worth retrying, and how long to wait before the next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors

from choreo.outbox.errors import PermanentError, TransientError

TRANSIENT_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,  # connection lost, server shutting down
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
)


def is_transient(error: BaseException) -> bool:
    """Declared transient errors and the database errors that a retry can fix.

    These are retried for as long as ``Backoff.transient_window_s`` allows: an outage of
    a dependency (the database, the payment provider) is waited out rather than turned
    into dead letters. Anything else (a bug in a handler, say) gets ``max_attempts``;
    a ``PermanentError`` gets no retry at all.
    """
    return isinstance(error, (TransientError, *TRANSIENT_DATABASE_ERRORS))


def is_permanent(error: BaseException) -> bool:
    return isinstance(error, PermanentError)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""

    base_s: float = 0.05
    cap_s: float = 5.0
    max_attempts: int = 5
    transient_window_s: float = 120.0
    """How long transient failures of one event are retried before it is dead-lettered."""
    inline_window_s: float = 1.0
    """How long an event's transient failures are retried in place, holding up its batch:
    long enough for a deadlock or a dropped connection, short against a saga's deadline.
    After that the event is retried on its key's own schedule (``retrying``) and every
    other key goes on."""

    def gives_up(self, error: BaseException, attempt: int, elapsed_s: float) -> bool:
        if is_permanent(error):
            return True
        if is_transient(error):
            return elapsed_s >= self.transient_window_s
        return attempt >= self.max_attempts

    def retries_in_place(self, error: BaseException, elapsed_s: float) -> bool:
        """Whether the next attempt may hold the batch up (else: retry on the key's own)."""
        return not is_transient(error) or elapsed_s < self.inline_window_s

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay after failed ``attempt`` (1-based): uniform in [0, min(cap, base·2^(n-1))]."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)
