"""When does a polling relay's position cover a mark? Every row visible at the mark must be
outside what the position still leaves out (its running transactions, rows above it)."""

from __future__ import annotations

from choreo.outbox.poller import Position
from choreo.outbox.relayed import covers

MARK = Position(after_seq=100, in_flight=(40,), running_from=50)
"""Rows up to seq 100 visible; transaction 40 still running, 50 and up not yet begun."""


def test_a_position_taken_after_the_mark_covers_it() -> None:
    assert covers(Position(120, (55,), 60), MARK)


def test_the_same_snapshot_covers_itself() -> None:
    assert covers(MARK, MARK)


def test_rows_above_the_position_are_not_covered() -> None:
    assert not covers(Position(99, (), 60), MARK)


def test_a_transaction_running_for_the_relay_but_committed_at_the_mark_is_not_covered() -> None:
    """Its rows may sit below the relay's after_seq: they come as late rows, not yet."""
    assert not covers(Position(120, (45,), 60), MARK)


def test_a_transaction_still_running_at_the_mark_does_not_matter() -> None:
    assert covers(Position(120, (40,), 60), MARK)


def test_transactions_the_relay_never_listed_must_have_been_running_at_the_mark() -> None:
    """From its running_from on the relay lists nothing: 48 committed before the mark."""
    assert not covers(Position(120, (), 48), MARK)
    assert covers(Position(120, (), 48), Position(100, (40, 48, 49), 50))
