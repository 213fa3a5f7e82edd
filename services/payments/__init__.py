"""The payments participant: charges a reserved order once, refunds a cancelled capture.

It consumes order.events (the token in OrderPlaced, OrderCancelled) and
inventory.events (the total in StockReserved), which arrive in any order relative to
each other, and emits PaymentCaptured, PaymentDeclined and PaymentRefunded. The rules
are in ``domain.py``, the psp boundary in ``provider.py``; run it with
``python -m choreo.services.payments``.
"""
