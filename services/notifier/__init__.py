"""A stand-in for an email and text-message provider, run by the stack like the psp.

Its own ledger (the ``notifier`` database) keeps every message it accepted, so the
messages a customer really received, and any duplicates, are counted from the provider's
side. Like a real provider's test mode, the recipient decides what happens
(``recipients.py``).
"""
