"""Which failures are retried, and for how long: outages are waited out, bugs are not."""

from __future__ import annotations

import random

import psycopg

from choreo.outbox.errors import PermanentError, TransientError
from choreo.outbox.retry import Backoff

POLICY = Backoff(base_s=0.05, cap_s=2.0, max_attempts=5, transient_window_s=120.0)


def test_transient_failures_are_retried_for_the_whole_window() -> None:
    for error in (TransientError("psp down"), psycopg.OperationalError("connection lost")):
        assert not POLICY.gives_up(error, attempt=50, elapsed_s=119.0)
        assert POLICY.gives_up(error, attempt=51, elapsed_s=120.0)


def test_unexpected_errors_get_a_few_attempts_and_permanent_ones_none() -> None:
    assert not POLICY.gives_up(KeyError("bug"), attempt=4, elapsed_s=0.1)
    assert POLICY.gives_up(KeyError("bug"), attempt=5, elapsed_s=0.1)
    assert POLICY.gives_up(PermanentError("bad payload"), attempt=1, elapsed_s=0.0)


def test_delays_grow_exponentially_with_full_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(2.0, 0.05 * 2 ** (attempt - 1))
        assert all(0 <= POLICY.delay(attempt, rng) <= ceiling for _ in range(50))
