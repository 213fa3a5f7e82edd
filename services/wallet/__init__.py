"""The wallet participant: a stored balance and loyalty points per customer.

An order placed with ``payment_method: "wallet"`` is paid here instead of at the psp:
debited on its ``StockReserved``, refunded when a debited order is cancelled. Points are
credited on every ``OrderConfirmed`` and taken back when a confirmed order is cancelled.
Everything is a row of its own database, changed in the consumer's transaction: there is
no outside call, so a debit, its event and the inbox row commit together.
"""
