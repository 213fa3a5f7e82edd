"""Fewer fetches while a consumer has had nothing to do for a while.

The embedded broker answers a fetch only after its whole ``fetch.wait.max.ms`` (10 ms
here), and librdkafka sends the next one at once, so an idle consumer asks about a
hundred times a second; each ask costs the broker about 0.8 ms of CPU, which makes the
three consumers the whole of the broker's idle cost (docs/benchmarks.md, "Idle CPU").
After ``quiet_s`` without a message the runtime dozes: its partitions are paused for
``pause_s``, fetched for one round (``awake_s``), paused again, and so on until a
message arrives. The price is paid by the first event after a quiet spell, which waits
up to ``pause_s`` longer; a consumer with work never dozes, so load is not slowed. Real
Kafka holds an empty fetch on the broker instead, so there ``pause_s=0`` (never doze)
costs nothing.

A doze ends with ``Assignment.release``, which resumes each partition and seeks it to
the first event not handled yet: everything polled before the doze began was handled,
so that is where fetching stopped. Without the seek, librdkafka fetched a resumed
partition again only about 700 ms later; with it, at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from outbox.assignment import Assignment


@dataclass
class Doze:
    pause_s: float
    """0: never doze."""
    quiet_s: float = 1.0
    awake_s: float = 0.02
    """About one fetch round of the embedded broker."""
    _quiet_since: float | None = None
    _paused_until: float = 0.0
    _dozing: bool = False

    def before_poll(self, assignment: Assignment, now: float, wait_s: float) -> float:
        """Wakes the partitions once a pause is over; returns how long the poll may wait."""
        if self._paused_until and now >= self._paused_until:
            assignment.release()
            self._paused_until = 0.0
        if self._paused_until:
            return self._paused_until - now
        return self.awake_s if self._dozing else wait_s

    def after_poll(self, assignment: Assignment, received: bool, now: float) -> None:
        """A message ends the doze; a quiet spell long enough starts or continues it."""
        if received or self._quiet_since is None:
            self._quiet_since = now
            self._dozing = False
            return
        if self.pause_s <= 0 or self._paused_until or now - self._quiet_since < self.quiet_s:
            return
        assignment.hold()
        self._paused_until = now + self.pause_s
        self._dozing = True

    @property
    def dozing(self) -> bool:
        return self._dozing

    def interrupted(self, now: float) -> None:
        """The runtime holds the partitions for its own reason (``RetryLater``) and will
        release them itself: the doze starts over from awake."""
        self._paused_until = 0.0
        self._dozing = False
        self._quiet_since = now
