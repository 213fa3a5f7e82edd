"""The psp's Prometheus metrics, in a registry of their own.

A registry per application (rather than prometheus_client's global one) lets several
apps live in one process, as tests do, without "duplicated timeseries" errors.
Counters move only after the transaction that caused them committed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class PspMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.captures = Counter("psp_charges_captured", "Charges captured",
                                registry=self.registry)
        self.captured_cents = Counter("psp_charges_captured_cents", "Cents captured",
                                      registry=self.registry)
        self.declines = Counter("psp_charges_declined", "Charges declined, by decline code",
                                ["code"], registry=self.registry)
        self.refunds = Counter("psp_refunds", "Refunds made", registry=self.registry)
        self.refunded_cents = Counter("psp_refunds_cents", "Cents refunded",
                                      registry=self.registry)
        self.replays = Counter("psp_idempotent_replays",
                               "Requests answered from the idempotency store, by endpoint",
                               ["endpoint"], registry=self.registry)
        self.latency = Histogram("psp_request_duration_seconds",
                                 "HTTP request latency, by route and status",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                          10))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
