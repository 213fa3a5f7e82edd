"""A small synchronous client for the psp, and the exceptions that tell a caller what to do.

The exception says whether retrying can help:

* :class:`PaymentDeclined` (402) is a business outcome and permanent: do not retry.
* :class:`PspUnavailable` (timeout, connection error, 5xx, 409 in flight) is transient:
  retry **with the same idempotency key**. The charge may or may not have happened;
  the key makes the retry return the original answer instead of capturing again.
* :class:`PspRequestError` (any other 4xx) means the request itself is wrong (bad
  field, key reused for another body, unknown charge); retrying changes nothing.

A client keeps one ``requests.Session`` per thread (a session is not thread-safe), so
one client can serve the payments handlers that run side by side for different orders.

A client made with ``answered_retries`` sends a request the psp *answered* with a server
error (500, 502-504) again at once, with the same idempotency key, that many times
before it raises (urllib3's ``Retry``, below the session). Such an answer took
milliseconds and moved no money, and ``tok_flaky``'s 503 is gone on the second try; the
alternative, raising, rolls back the whole batch transaction the charge ran in. A
timeout or a refused connection is never sent again in place: it already cost the
timeout, and the charge may still be running, so it goes to the caller's own retry.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

TRANSIENT_FAILURES = (requests.Timeout, requests.ConnectionError,
                      requests.exceptions.ChunkedEncodingError)
"""No answer, or half of one: the request may or may not have taken effect."""


class PspError(Exception):
    """Root of the client's exceptions."""


class PaymentDeclined(PspError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PspUnavailable(PspError):
    """Transient: retry with the same idempotency key.

    ``status`` is the HTTP status of the answer, None when there was none (a timeout, a
    refused or dropped connection): a caller's circuit breaker tells "the psp is down"
    from "this request failed" by it.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PspRequestError(PspError):
    def __init__(self, status: int, code: str, message: str, param: str | None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (param {param})" if param else ""))
        self.status = status
        self.code = code
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Charge:
    id: str
    status: str
    amount_cents: int
    currency: str
    reference: str
    amount_refunded_cents: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Charge:
        return cls(data["id"], data["status"], data["amount_cents"], data["currency"],
                   data["reference"], data["amount_refunded_cents"])


@dataclass(frozen=True)
class Refund:
    id: str
    charge_id: str
    amount_cents: int
    status: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Refund:
        return cls(data["id"], data["charge_id"], data["amount_cents"], data["status"])


@dataclass(frozen=True)
class LedgerSummary:
    captured_cents: int
    refunded_cents: int
    charges: int
    refunds: int

    @property
    def net_cents(self) -> int:
        """What the audits compare with the total of confirmed orders."""
        return self.captured_cents - self.refunded_cents


ANSWERED_FAILURES = frozenset({500, 502, 503, 504})


def answered_retry(retries: int) -> Retry:
    """Sends a request again only when a server error came back; no wait on the first
    retry, 40 ms before the second; a ``Retry-After`` is not honoured (the caller's
    breaker and retry policy decide how long to stay away, not one answer)."""
    return Retry(total=retries, connect=0, read=0, other=0, status=retries,
                 status_forcelist=ANSWERED_FAILURES, allowed_methods=None,
                 backoff_factor=0.02, respect_retry_after_header=False,
                 raise_on_status=False)


class PspClient:
    def __init__(self, base_url: str, timeout_s: float, answered_retries: int = 0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.answered_retries = answered_retries
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def __enter__(self) -> PspClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        """This thread's session, kept for connection reuse."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            adapter = HTTPAdapter(max_retries=answered_retry(self.answered_retries))
            for scheme in ("http://", "https://"):
                session.mount(scheme, adapter)
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def charge(self, idempotency_key: str, amount_cents: int, currency: str, token: str,
               reference: str) -> Charge:
        body = {"amount_cents": amount_cents, "currency": currency, "token": token,
                "reference": reference}
        return Charge.from_json(self._request("POST", "/v1/charges", body, idempotency_key))

    def refund(self, idempotency_key: str, charge_id: str,
               amount_cents: int | None = None) -> Refund:
        """Refunds what is left of the charge unless ``amount_cents`` is given."""
        body: dict[str, Any] = {"charge_id": charge_id}
        if amount_cents is not None:
            body["amount_cents"] = amount_cents
        return Refund.from_json(self._request("POST", "/v1/refunds", body, idempotency_key))

    def charges_for(self, reference: str) -> list[Charge]:
        listing = self._request("GET", "/v1/charges", params={"reference": reference})
        return [Charge.from_json(item) for item in listing["data"]]

    def summary(self) -> LedgerSummary:
        data = self._request("GET", "/v1/ledger/summary")
        return LedgerSummary(data["captured_cents"], data["refunded_cents"], data["charges"],
                             data["refunds"])

    def start_outage(self, mode: str, seconds: float, delay_s: float | None = None) -> None:
        """Make the psp fail or be slow for ``seconds`` (``services.psp.outage``; a test
        and chaos tool, answered on the loopback interface only)."""
        body: dict[str, Any] = {"mode": mode, "seconds": seconds}
        if delay_s is not None:
            body["delay_s"] = delay_s
        self._request("POST", "/admin/outage", body)

    def end_outage(self) -> None:
        self._request("DELETE", "/admin/outage")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 idempotency_key: str | None = None,
                 params: dict[str, str] | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        try:
            response = self.session.request(method, self.base_url + path, json=body,
                                            params=params, headers=headers,
                                            timeout=self.timeout_s)
        except TRANSIENT_FAILURES as error:
            raise PspUnavailable(f"{method} {path}: {error}") from error
        if response.status_code >= 500 or response.status_code == 409:
            raise PspUnavailable(f"{method} {path}: {response.status_code} {response.text}",
                                 response.status_code)
        try:
            payload = response.json()
        except ValueError:
            raise PspUnavailable(f"{method} {path}: {response.status_code} answered non-JSON"
                                 f" {response.text[:200]!r}", response.status_code) from None
        if response.ok:
            return payload
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        code = str(error.get("code", "unknown"))
        message = str(error.get("message", response.text))
        if response.status_code == 402:
            raise PaymentDeclined(code, message)
        raise PspRequestError(response.status_code, code, message, error.get("param"))
