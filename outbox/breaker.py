"""A circuit breaker around a remote dependency: pybreaker's state machine, our signal.

Why: while a dependency is down, every event that needs it fails the same way, and
retrying each one for the whole transient window (``outbox.retry``) holds the consumer
for minutes per event, then dead-letters what an outage did not spoil. After
``fail_max`` failures in a row the circuit opens; calls then fail at once with
:class:`~outbox.errors.RetryLater`, which the runtime answers by pausing its partitions
(``outbox.consumer``). After ``reset_timeout_s`` the next calls are the half-open probe:
a success closes the circuit, a failure opens it for another ``reset_timeout_s``.

Which errors count is the caller's decision (``counts``): an answer that says only this
request failed (a decline, a conflict) is not the dependency being down, and pybreaker
treats such an excluded error as a success.

Why ``calling()`` and not pybreaker's ``call()``: ``call()`` holds the breaker's lock
while the guarded function runs (danielfm/pybreaker#3), which would queue the lanes'
calls one behind the other; ``calling()`` takes it only for the state changes. The price
is that every call already under way when the circuit goes half-open is a probe too: at
most one per lane.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import pybreaker

from choreo.outbox import config
from choreo.outbox.errors import RetryLater
from choreo.outbox.metrics import CIRCUIT_STATE, CIRCUIT_TRANSITIONS

log = logging.getLogger(__name__)

STATES = ("closed", "open", "half-open")


@dataclass(frozen=True)
class CircuitSettings:
    fail_max: int = 5
    """Failures in a row that open the circuit (a success in between starts again)."""
    reset_timeout_s: float = 5.0
    """How long it stays open before the next calls probe the dependency."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> CircuitSettings:
        """``<prefix>_BREAKER_FAILURES`` and ``<prefix>_BREAKER_RESET_S``
        (``CHOREO_PSP_BREAKER_FAILURES``, ...), the defaults when unset."""
        return cls(
            fail_max=config.integer(env, f"{prefix}_BREAKER_FAILURES", cls.fail_max,
                                    ge=1, le=1000),
            reset_timeout_s=config.number(env, f"{prefix}_BREAKER_RESET_S",
                                          cls.reset_timeout_s, gt=0, le=600),
        )


class Circuit:
    def __init__(self, name: str, settings: CircuitSettings,
                 counts: Callable[[BaseException], bool]) -> None:
        self.name = name
        self.settings = settings
        self._opened_at = 0.0
        self._shown = ""
        self._lock = threading.Lock()
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=settings.fail_max, reset_timeout=settings.reset_timeout_s,
            exclude=[lambda error: not counts(error)], listeners=[_Transitions(self)],
            name=name)
        self._show("closed")

    @property
    def state(self) -> str:
        """closed, open or half-open; open until the first call after the reset timeout."""
        return str(self._breaker.current_state)

    @contextmanager
    def guarding(self) -> Iterator[None]:
        """Run the block unless the circuit is open; count its failure if ``counts`` says so.

        Raises ``RetryLater`` instead of running the block while the circuit is open, and
        instead of the block's error when that error opened it.
        """
        try:
            with self._breaker.calling():
                yield
        except pybreaker.CircuitBreakerError as error:
            raise RetryLater(f"circuit {self.name} open: {error}", self.retry_after_s()) \
                from error

    def retry_after_s(self) -> float:
        """Time left until the half-open probe; never 0, so a pause always yields."""
        left = self._opened_at + self.settings.reset_timeout_s - time.monotonic()
        return max(0.05, left)

    def _entered(self, state: str) -> None:
        """Lanes that fail or succeed at once each set the new state: count it once."""
        with self._lock:
            if state == self._shown:
                return
            self._shown = state
        if state == "open":
            self._opened_at = time.monotonic()
        CIRCUIT_TRANSITIONS.labels(self.name, state).inc()
        self._show(state)
        log.warning("circuit %s %s", self.name, state, extra={"circuit": self.name})

    def _show(self, current: str) -> None:
        self._shown = current
        for state in STATES:
            CIRCUIT_STATE.labels(self.name, state).set(1 if state == current else 0)


class _Transitions(pybreaker.CircuitBreakerListener):
    def __init__(self, circuit: Circuit) -> None:
        self.circuit = circuit

    def state_change(self, cb: pybreaker.CircuitBreaker,
                     old_state: pybreaker.CircuitBreakerState | None,
                     new_state: pybreaker.CircuitBreakerState) -> None:
        self.circuit._entered(str(new_state.name))
