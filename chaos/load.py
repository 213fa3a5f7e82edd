"""The steady stream of customers: place each planned order on time, cancel some later.

Requests are handed out at the plan's rate whatever the system is doing, and each runs
in a worker thread that waits out outages, so an orders-api restart shows up as retries
and replays, not as a gap in the offered load.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from choreo.chaos.plan import WALLET, OrderRequest, Plan
from choreo.testkit.orders_client import Attempts, OrdersClient

WORKERS = 64
"""Requests in flight at once. During a long orders-api outage the rest queue up and go
out as soon as workers free up, so every request is still sent, some late."""


@dataclass
class Placed:
    request: OrderRequest
    key: str
    placement: Attempts
    cancel: Attempts | None = None

    @property
    def order_id(self) -> str | None:
        body = self.placement.body
        return body["id"] if self.placement.status == 202 and body else None

    @property
    def replayed(self) -> bool:
        """The service had already taken this order on an attempt whose answer was lost."""
        return bool(self.placement.body and self.placement.body.get("replayed"))


class Load:
    def __init__(self, plan: Plan, skus: list[str], client: OrdersClient,
                 customer: str) -> None:
        self.plan = plan
        self.skus = skus
        self.client = client
        self.customer = customer
        self.placed: list[Placed] = []
        self._lock = threading.Lock()

    def body(self, request: OrderRequest) -> dict[str, Any]:
        paid = {"payment_method": WALLET} if request.token == WALLET \
            else {"payment_token": request.token}
        return {"customer_id": self.customer, **paid, "deadline_s": self.plan.order_deadline_s,
                "items": [{"sku": self.skus[sku], "quantity": quantity}
                          for sku, quantity in request.lines]}

    def serve(self, request: OrderRequest) -> None:
        key = f"{self.customer}-{request.index}"
        placed = Placed(request, key, self.client.submit(key, self.body(request)))
        with self._lock:
            self.placed.append(placed)
        if placed.order_id and request.cancel_after_s is not None:
            time.sleep(request.cancel_after_s)
            placed.cancel = self.client.submit_cancel(placed.order_id)

    def run(self, started: float, faults_pending: Callable[[], bool]) -> list[Placed]:
        """Send request ``i`` at ``started + i / rate``, for the planned duration and on
        while ``faults_pending()``; return once every request has its answer."""
        try:
            with ThreadPoolExecutor(WORKERS, thread_name_prefix="chaos-load") as pool:
                futures = []
                for index in itertools.count():
                    if index >= self.plan.planned_orders and not faults_pending():
                        break
                    time.sleep(max(0.0, started + self.plan.due_s(index) - time.monotonic()))
                    futures.append(pool.submit(self.serve, self.plan.order(index)))
                for future in futures:
                    future.result()
        finally:
            self.client.close()
        return sorted(self.placed, key=lambda p: p.request.index)

    def progress(self) -> tuple[int, int]:
        """(answered, accepted) so far."""
        with self._lock:
            return len(self.placed), sum(p.order_id is not None for p in self.placed)
