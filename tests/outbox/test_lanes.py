"""Lanes: keys side by side, one key in order, a failure stops the run (pure)."""

from __future__ import annotations

import threading
import time

import pytest

from choreo.outbox.lanes import Lanes


@pytest.fixture
def lanes():
    pool: Lanes = Lanes(4)
    yield pool
    pool.close()


def test_different_keys_wait_at_the_same_time(lanes):
    both_waiting = threading.Barrier(2, timeout=5)  # broken unless two lanes overlap

    def work(item: str) -> str:
        both_waiting.wait()
        return item.upper()

    assert lanes.run([("a", "x"), ("b", "y")], work) == ["X", "Y"]


def test_one_key_keeps_its_order_and_results_keep_the_items_order(lanes):
    seen: list[str] = []
    lock = threading.Lock()

    def work(item: str) -> str:
        time.sleep(0.01 if item.endswith("1") else 0)  # the first of each key is slower
        with lock:
            seen.append(item)
        return item

    items = [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2"), ("a", "a3")]
    assert lanes.run(items, work) == ["a1", "b1", "a2", "b2", "a3"]
    assert [i for i in seen if i[0] == "a"] == ["a1", "a2", "a3"]
    assert [i for i in seen if i[0] == "b"] == ["b1", "b2"]


def test_a_failure_starts_nothing_new_and_is_raised_once_all_lanes_stopped(lanes):
    started: list[str] = []
    slow_started, slow_done = threading.Event(), threading.Event()

    def work(item: str) -> str:
        started.append(item)
        if item == "a1":
            slow_started.wait(5)  # fail while b1 is still at work
            raise ValueError("boom")
        if item == "b1":
            slow_started.set()
            time.sleep(0.1)
            slow_done.set()
        return item

    with pytest.raises(ValueError, match="boom"):
        lanes.run([("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")], work)
    assert slow_done.is_set(), "run returned while a lane was still working"
    assert "a2" not in started and "b2" not in started


def test_a_single_key_runs_on_the_callers_thread(lanes):
    caller = threading.get_ident()
    assert lanes.run([("a", 1), ("a", 2)], lambda _: threading.get_ident()) == [caller, caller]
