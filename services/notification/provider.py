"""The boundary to the message provider, and its failures in the runtime's terms.

One Idempotency-Key per order and kind: a retry after a timeout, a redelivery or a
second replica gets the provider's first message back instead of sending another. No
answer, a 5xx or a 409 is transient (retried with the same key, through the circuit
breaker, which pauses the consumer while the provider is down); any other refusal is
permanent (the event is dead-lettered with the provider's answer as its reason).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import requests

from choreo.outbox import Circuit, PermanentError, TransientError


class ProviderUnavailable(TransientError):
    """No answer in time, no connection, or a 5xx: the same key is safe to send again."""


class ProviderRefused(PermanentError):
    """The provider refused the message itself."""


def provider_down(error: BaseException) -> bool:
    """What opens the breaker: the provider, not one message, is failing."""
    return isinstance(error, ProviderUnavailable)


@dataclass(frozen=True)
class Message:
    channel: str
    to: str
    reference: str
    subject: str
    body: str


class Notifier:
    def __init__(self, base_url: str, timeout_s: float, circuit: Circuit | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.circuit = circuit
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        """One per thread: the handlers' lanes and the sweeper's thread send side by side,
        and a ``requests.Session`` is not made to be shared between threads."""
        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
        return self._local.session

    def send(self, key: str, message: Message) -> int:
        """The provider's message id; the same for every call with ``key``."""
        if self.circuit is None:
            return self._post(key, message)
        with self.circuit.guarding():
            return self._post(key, message)

    def _post(self, key: str, message: Message) -> int:
        try:
            response = self.session.post(f"{self.base_url}/messages", json=message.__dict__,
                                         headers={"Idempotency-Key": key},
                                         timeout=self.timeout_s)
        except requests.RequestException as error:
            raise ProviderUnavailable(f"message {key}: {error}") from error
        if response.status_code >= 500 or response.status_code == 409:
            raise ProviderUnavailable(f"message {key}: {response.status_code}"
                                      f" {response.text[:200]}")
        if response.status_code not in (200, 201):
            raise ProviderRefused(f"message {key}: {response.status_code}"
                                  f" {response.text[:200]}")
        return int(response.json()["id"])
