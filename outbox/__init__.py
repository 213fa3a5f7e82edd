"""The library every choreo service uses: outbox writer, event codec, idempotent consumer.

A service needs only its SQL and one handler per event type; this package owns the
guarantees (atomic state + event, effectively-once handling, retries, dead letters).
"""
