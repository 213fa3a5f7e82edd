"""The orders API over HTTP, as a client sees it: the one client tests, chaos, and the CLI use.

A person at a terminal wants the first failure reported (``give_up_s=0``, the default).
A chaos customer keeps trying: when orders-api is dead, restarting, or killed halfway
through a request, it cannot know whether its order was taken, so it retries with the
same Idempotency-Key until it gets an answer, and the service, not luck, decides that no
order is lost or placed twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests

from choreo.stack.errors import StackError

RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
"""No answer, or half of one: the request may or may not have taken effect."""


@dataclass
class Attempts:
    """How one call went: how often it was sent, what the last answer was."""

    count: int = 0
    server_errors: int = 0
    """5xx answers: retried, but worth reporting; the edge should fail by not answering."""
    status: int | None = None
    body: dict[str, Any] | None = None


TERMINAL = frozenset({"CONFIRMED", "REJECTED", "CANCELLED"})


def saga_settled(order: dict[str, Any]) -> bool:
    """Terminal, and the compensations a cancellation triggers have been seen."""
    if order["status"] not in TERMINAL:
        return False
    seen = {entry["event_type"] for entry in order["history"]}
    if order["status"] == "CANCELLED" and "StockReserved" in seen:
        return "StockReleased" in seen and ("PaymentCaptured" not in seen
                                            or "PaymentRefunded" in seen)
    return True


class OrdersClient:
    """Retries transport failures and 5xx with backoff, for at most ``give_up_s`` per call."""

    def __init__(self, orders_port: int, give_up_s: float = 0.0, api_key: str = "") -> None:
        """``api_key``: for an intake that authenticates its callers (``outbox.access``)."""
        self.base = f"http://127.0.0.1:{orders_port}"
        self.give_up_s = give_up_s
        self.api_key = api_key
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """One session per thread: ``requests.Session`` is not thread-safe."""
        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
            if self.api_key:
                self._local.session.headers["Authorization"] = f"Bearer {self.api_key}"
            with self._lock:
                self._sessions.append(self._local.session)
        return self._local.session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def submit(self, key: str, body: dict[str, Any]) -> Attempts:
        """``POST /orders`` as it went, whatever the answer."""
        return self._send(f"{self.base}/orders", body, {"Idempotency-Key": key})

    def place(self, items: list[dict[str, Any]], token: str, customer: str = "demo",
              deadline_s: float | None = None, key: str | None = None,
              method: str = "card") -> dict[str, Any]:
        """The accepted order (its id and status URL); anything but a 202 is an error."""
        body: dict[str, Any] = {"customer_id": customer, "items": items, "payment_token": token,
                                "payment_method": method}
        if deadline_s is not None:
            body["deadline_s"] = deadline_s
        attempts = self.submit(key or str(uuid.uuid4()), body)
        if attempts.status is None:
            raise StackError(f"no answer from orders-api at {self.base}; is the stack up?")
        if attempts.status != 202 or attempts.body is None:
            raise StackError(f"order refused: {attempts.status} {attempts.body}")
        return attempts.body

    def get(self, order_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.base}/orders/{order_id}", timeout=10)
        response.raise_for_status()
        return response.json()

    def submit_cancel(self, order_id: str) -> Attempts:
        """``POST /orders/{id}/cancel`` as it went, whatever the answer."""
        return self._send(f"{self.base}/orders/{order_id}/cancel", None, {})

    def cancel(self, order_id: str) -> dict[str, Any]:
        """The answer's body (202 cancelled, 409 too late, ...); no answer is an error."""
        attempts = self.submit_cancel(order_id)
        if attempts.body is None:
            raise StackError(f"no answer to the cancel of {order_id} from {self.base}")
        return attempts.body

    def _send(self, url: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Attempts:
        attempts = Attempts()
        deadline = time.monotonic() + self.give_up_s
        delay = 0.05
        while True:
            attempts.count += 1
            try:
                response = self.session.post(url, json=body, headers=headers, timeout=5)
            except RETRYABLE:
                self.session.close()  # its pooled connection may be half-dead; start afresh
                self._local.session = None
            else:
                attempts.status = response.status_code
                if response.status_code < 500:
                    attempts.body = response.json()
                    return attempts
                attempts.server_errors += 1
            if time.monotonic() + delay > deadline:
                return attempts
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
