"""A customer who keeps trying: the HTTP client of a chaos run.

When orders-api is dead, restarting, or killed halfway through a request, the client
cannot know whether its order was taken. It retries with the same Idempotency-Key
until it gets an answer, so the service, not luck, decides that no order is lost or
placed twice. (``infra.saga_cli.OrdersApi`` gives up on the first failure, which is
right for a person at a terminal and wrong here.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

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


class PatientClient:
    """Retries transport failures and 5xx with backoff, for at most ``give_up_s`` per call."""

    def __init__(self, orders_port: int, give_up_s: float = 60.0) -> None:
        self.base = f"http://127.0.0.1:{orders_port}"
        self.give_up_s = give_up_s
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """One session per thread: ``requests.Session`` is not thread-safe."""
        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(self._local.session)
        return self._local.session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def place(self, key: str, body: dict[str, Any]) -> Attempts:
        return self._send(f"{self.base}/orders", body, {"Idempotency-Key": key})

    def cancel(self, order_id: str) -> Attempts:
        return self._send(f"{self.base}/orders/{order_id}/cancel", None, {})

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
