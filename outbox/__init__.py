"""The library a participant is built on: the outbox writer, the idempotent consumer
runtime, the sequenced dead letters (``choreo.outbox``).

A service needs its SQL, one handler per event type it consumes, and the names below;
the runtime owns the guarantees (state change and event in one transaction,
effectively-once handling, per-key retries, dead letters). Everything else in this
package is private by convention and may change: a participant imports from here only
(``tests/test_layers.py`` checks it for choreo's own). ``choreo.outbox.testing`` holds
what a participant's tests need (docs/library.md).
"""

from choreo.outbox import config, http
from choreo.outbox.breaker import Circuit, CircuitSettings
from choreo.outbox.consumer import Handler
from choreo.outbox.delivery import ReceivedEvent
from choreo.outbox.errors import ConfigError, PermanentError, RetryLater, TransientError
from choreo.outbox.runner import PeriodicJob, ServiceDefinition, exit_status
from choreo.outbox.runner import main as run_service
from choreo.outbox.settings import ServiceSettings
from choreo.outbox.tracing import continued_span, current_traceparent
from choreo.outbox.writer import OutboxWriter

__all__ = [
    "Circuit",
    "CircuitSettings",
    "ConfigError",
    "Handler",
    "OutboxWriter",
    "PeriodicJob",
    "PermanentError",
    "ReceivedEvent",
    "RetryLater",
    "ServiceDefinition",
    "ServiceSettings",
    "TransientError",
    "config",
    "continued_span",
    "current_traceparent",
    "exit_status",
    "http",
    "run_service",
]
