"""The notification participant: one message per order and kind, on the customer's channel.

It reacts to how orders end (``OrderConfirmed``, ``OrderRejected``, ``OrderCancelled``)
and to refunds (``PaymentRefunded``, ``WalletRefunded``), and sends through the message
provider (the ``notifier`` stand-in) with an Idempotency-Key per order and kind, so a
redelivery, a retry after a timeout or a second replica cannot send twice. Who the
customer is and how to reach them come from its own projections of ``order.events``
and ``customer.events``: it calls nobody but the provider.
"""
