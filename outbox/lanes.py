"""Handlers of different aggregates side by side, inside one transaction.

Why: a handler that waits on a remote call (payments on the psp) holds its consumer for
the whole call, so a run of a polled batch costs the sum of its calls, and under load
the queue in front of that one consumer is where a saga spends most of its time. Events
of different keys are independent (each key is one order), so their handlers may wait
at the same time; the events of one key stay in offset order, in one lane.

Why still one transaction: its commit is what makes the run's inbox claims and effects
durable together, with one WAL flush for the whole run, on the session that holds the
partition leases. psycopg serialises the statements of threads sharing a connection,
so lanes interleave statements and overlap only their waiting.

Only for handlers whose different keys touch disjoint rows: lanes of one transaction
see each other's uncommitted writes, and two read-modify-writes of one shared row (a
stock level, say) would lose an update.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Lanes(Generic[Item, Result]):
    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lane")

    def run(self, items: Sequence[tuple[str, Item]], work: Callable[[Item], Result]
            ) -> list[Result]:
        """``work`` on every item, in order per key, keys side by side.

        Returns once every lane has stopped, the results in the items' order. If any
        item fails, the lanes start nothing new and the first failure is raised: the
        caller rolls the whole run back.
        """
        by_key: dict[str, list[int]] = {}
        for index, (key, _) in enumerate(items):
            by_key.setdefault(key, []).append(index)
        if len(by_key) <= 1:
            return [work(item) for _, item in items]
        results: dict[int, Result] = {}
        failed = threading.Event()

        def lane(indexes: list[int]) -> None:
            for index in indexes:
                if failed.is_set():
                    return
                try:
                    results[index] = work(items[index][1])
                except BaseException:
                    failed.set()
                    raise

        futures = [self._pool.submit(lane, indexes) for indexes in by_key.values()]
        wait(futures)
        for future in futures:
            future.result()
        return [results[index] for index in range(len(items))]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
