"""The users participant: customers and their preferences, told to the others as events.

Nobody calls it: orders, wallet and notification keep the projections they need from
``customer.events`` (docs/saga.md).
"""
