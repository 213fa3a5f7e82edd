"""A stand-in external payment provider (psp) with its own PostgreSQL ledger.

It is the external side effect that chaos runs audit, so it is exact: one capture per
idempotency key however many identical requests arrive, concurrently or after a
timeout. The API follows Stripe's idempotency semantics (see README.md); the test
tokens that make it decline, stall or fail are described in ``tokens.py``. Callers use
``services.payments.psp_client.PspClient``; run it with ``python -m choreo.services.psp``.
"""
